"""Training objectives: pure functions returning named losses (logging lives in the trainer)."""
