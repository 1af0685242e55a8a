"""NIR export/import, lowering passes, the integer IR, hardware targets and reports."""
