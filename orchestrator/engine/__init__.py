"""Everything that imports temporalio: the embedded server, the client session, workers, workflows and
activities, runs and schedules. Deliberately empty: importing a workflow module must not import I/O."""
