fn main() {
    if let Err(e) = ostree_composer::cli::run() {
        eprintln!("error: {e:#}");
        std::process::exit(ostree_composer::exit::exit_code_for(&e));
    }
}
