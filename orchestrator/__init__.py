"""patchwave's orchestrator: configuration, planning, the fact store, workflows and activities.

Imports ``providers.base`` and the ``providers`` registry only, never a hypervisor SDK.
"""
