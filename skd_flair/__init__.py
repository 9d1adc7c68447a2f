"""skd_flair: structural knowledge distillation for Flair."""
__version__ = "0.1.0"
