"""hardware: placeholder package; see ../shared/DESIGN.md. Filled by later issues."""
