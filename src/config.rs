//! Pipeline YAML → validated `Pipeline` (being built).
