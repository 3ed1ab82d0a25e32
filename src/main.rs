use clap::Parser;

fn main() {
    let cli = wxcube::cli::Cli::parse();
    std::process::exit(wxcube::cli::main_with(cli));
}
