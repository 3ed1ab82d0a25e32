use clap::Parser;

/// See Cargo.toml: the Parquet writer's short-lived zstd contexts are far cheaper to
/// allocate from jemalloc than from glibc.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    let cli = wxcube::cli::Cli::parse();
    std::process::exit(wxcube::cli::main_with(cli).code());
}
