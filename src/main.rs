fn main() -> std::process::ExitCode {
    obscura::cli::main()
}
