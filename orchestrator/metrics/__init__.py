"""Prometheus metrics from the fact store: a collector read at scrape time (:mod:`.collector`) and its
HTTP endpoint for ``patchwave serve`` and text renderings for ``patchwave report`` (:mod:`.exposition`)."""
