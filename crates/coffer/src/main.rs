//! The `coffer` binary: command line over the storage engine, the server (`serve`), and
//! commands that drive a running server.

mod cli;
mod output;
mod remote;
mod serve;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    let json = args.json;
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            output::error(&e, json);
            ExitCode::from(2)
        }
    }
}
