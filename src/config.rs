//! Pipeline YAML → validated `Pipeline` (being built).

// TEMPORARY stub until config lands.
#[derive(Debug)]
pub struct ConfigError {
    pub diagnostics: Vec<String>,
}
impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.diagnostics.join("\n"))
    }
}
pub fn load(_p: &std::path::Path) -> Result<crate::pipeline::Pipeline, ConfigError> {
    Err(ConfigError {
        diagnostics: vec!["not built".into()],
    })
}
