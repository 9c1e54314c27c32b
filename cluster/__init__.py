"""kelian on every core: worker processes behind one front (docs/scaling.md)."""
