"""Math of the zoo's operators (pure PyTorch references and fast paths), one folder per op."""
