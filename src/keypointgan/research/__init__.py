"""Research tools, not needed to train or use a detector: the appearance-leak and pose-preference
diagnostic (:mod:`.diagnose`, ``keypointgan diagnose``) and the supervised upper bound the demo and
the fidelity suite compare with (:mod:`.supervised`)."""
