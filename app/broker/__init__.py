"""Fan-out of recorded events to live subscribers: in-process, or through Redis across workers."""
