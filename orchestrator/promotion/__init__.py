"""Pinned promotion (pure): the pin set the first ring's patched-and-healthy VMs define, and what a
later-ring VM installs from it (:mod:`.pins`). Records: :mod:`orchestrator.facts.pins`; used by
``vm_patch`` (:mod:`orchestrator.engine.activities.patching`)."""
