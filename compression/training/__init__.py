"""Training: the teacher's fine-tune and the ``DistillationTrainer`` (through ``transformers.Trainer``), pure KD
losses, and the teacher's cached targets (logits, states, labelled augmented texts)."""
