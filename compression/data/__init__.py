"""Data: loading any data reference into train/validation/test splits, the embedded sources (models and data from
pip packages), text augmentation and the token alignment check between two tokenizers."""
