"""Our platform simulators: the PVE API simulator and the vcsim launcher (and the PVE schema conformance test)."""
