//! Every `strait …` command the README and docs/*.md show in a code block parses with the CLI's
//! real command line (`strait_cli::args::Cli`), and the ones that need nothing running
//! (`validate` of a directory in the repository) run and succeed.

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser;
use strait_cli::args::{Cli, Command as Subcommand};
use strait_tests::binaries;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The README and every docs/*.md, by name.
fn documents() -> Vec<(String, String)> {
    let root = repository();
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("reading docs/")
        .map(|e| e.expect("a docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("reading a document");
            (
                path.strip_prefix(&root).unwrap().display().to_string(),
                text,
            )
        })
        .collect()
}

/// The lines of fenced code blocks, with `\` continuations joined.
fn code_lines(markdown: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut in_block = false;
    let mut pending = String::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            pending.clear();
            continue;
        }
        if !in_block {
            continue;
        }
        let trimmed = line.trim();
        if let Some(start) = trimmed.strip_suffix('\\') {
            pending.push_str(start);
            pending.push(' ');
            continue;
        }
        pending.push_str(trimmed);
        lines.push(std::mem::take(&mut pending));
    }
    lines
}

/// The arguments of each `strait` command in a shell line: `strait ARGS`, or
/// `cargo run … --bin strait -- ARGS`, also after `&&`, `;`, `|` or in a `# or: …` comment.
fn strait_commands(line: &str) -> Vec<Vec<String>> {
    let line = line.strip_prefix("$ ").unwrap_or(line);
    let (code, comment) = match line.split_once('#') {
        Some((code, comment)) => (code, Some(comment)),
        None => (line, None),
    };
    let mut pieces: Vec<&str> = code.split(['&', ';', '|']).collect();
    if let Some(comment) = comment {
        pieces.push(comment.trim().strip_prefix("or:").unwrap_or(comment));
    }
    pieces
        .into_iter()
        .filter_map(|piece| {
            let words = split_words(piece.trim());
            let start = match words.iter().position(|w| w == "--bin") {
                Some(at) if words.get(at + 1).map(String::as_str) == Some("strait") => {
                    words.iter().position(|w| w == "--").map(|dash| dash + 1)?
                }
                _ if words.first().map(String::as_str) == Some("strait") => 1,
                _ => return None,
            };
            Some(words[start..].to_vec())
        })
        .collect()
}

/// Shell words: whitespace-separated, with single and double quotes.
fn split_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote = None;
    let mut started = false;
    for c in text.chars() {
        match (quote, c) {
            (None, '\'' | '"') => {
                quote = Some(c);
                started = true;
            }
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            (_, c) => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(word);
    }
    words
}

#[test]
fn the_extractor_finds_commands_in_every_written_form() {
    let markdown = "```sh\nstrait check --proxy 127.0.0.1:4191 \\\n  --min-validity 2h\ncurl x   # or: strait proxy-config deploy/web\ncargo run --release --bin strait -- stat deploy/web -n demo\n```\nstrait outside a block\n";
    let found: Vec<Vec<String>> = code_lines(markdown)
        .iter()
        .flat_map(|l| strait_commands(l))
        .collect();
    assert_eq!(
        found,
        [
            vec!["check", "--proxy", "127.0.0.1:4191", "--min-validity", "2h"],
            vec!["proxy-config", "deploy/web"],
            vec!["stat", "deploy/web", "-n", "demo"],
        ]
    );
    assert_eq!(split_words("a 'b c' \"d\""), ["a", "b c", "d"]);
}

#[test]
fn every_documented_strait_command_parses_and_local_ones_run() {
    let mut parsed = 0;
    let mut ran = 0;
    for (file, text) in documents() {
        for line in code_lines(&text) {
            for args in strait_commands(&line) {
                let cli =
                    Cli::try_parse_from(std::iter::once("strait".to_owned()).chain(args.clone()))
                        .unwrap_or_else(|e| {
                            panic!("{file}: `strait {}` does not parse:\n{e}", args.join(" "))
                        });
                parsed += 1;
                if let Subcommand::Validate { dir } = &cli.command {
                    let path = repository().join(dir);
                    if path.is_dir() {
                        let output = Command::new(binaries::path("strait"))
                            .args(&args)
                            .current_dir(repository())
                            .output()
                            .expect("running strait");
                        assert!(
                            output.status.success(),
                            "{file}: `strait {}` fails: {}",
                            args.join(" "),
                            String::from_utf8_lossy(&output.stderr)
                        );
                        ran += 1;
                    }
                }
            }
        }
    }
    assert!(
        parsed >= 8,
        "the docs show at least 8 strait commands; found {parsed}"
    );
    assert!(ran >= 1, "the README's `validate examples/local` runs");
}

#[test]
fn the_readme_documents_every_flag_of_the_strait_cli() {
    let readme = std::fs::read_to_string(repository().join("README.md")).unwrap();
    let mut documented = 0;
    for command in [None, Some("check"), Some("stat"), Some("proxy-config")] {
        let output = Command::new(binaries::path("strait"))
            .args(command)
            .arg("--help")
            .output()
            .unwrap();
        let help = String::from_utf8(output.stdout).unwrap();
        for line in help.lines() {
            let line = line.trim_start();
            let line = line
                .strip_prefix('-')
                .filter(|rest| rest.chars().nth(1) == Some(','))
                .map_or(line, |rest| rest[2..].trim_start());
            let Some(flag) = line.strip_prefix("--") else {
                continue;
            };
            let flag = flag.split_whitespace().next().unwrap();
            if flag == "help" || flag == "version" {
                continue;
            }
            assert!(
                readme.contains(&format!("| `--{flag}` |")),
                "README lacks strait {} --{flag}; regenerate it with scripts/config-reference",
                command.unwrap_or("")
            );
            documented += 1;
        }
    }
    assert!(documented >= 12, "strait --help listed {documented} flags");
}
