"""Schools and lessons: the organisation, its store, and the online/offline switchover."""
