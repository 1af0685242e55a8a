"""NIR graphs in kdsnn: file I/O (`read`, `write`), the canonical form (`canonicalize`,
`convert`), graph order (`order`) and run metadata (`meta`)."""
