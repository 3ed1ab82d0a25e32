//! Pipeline YAML → validated `Pipeline`.

mod interp;
mod node;
mod suggest;
