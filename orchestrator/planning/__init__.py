"""Planning (pure): the planner (``planner.make_plan``), its host phase (``hosts``), blockers,
target selection, the window timeline, and owners."""
