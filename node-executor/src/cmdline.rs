//! Building a Windows command line from separate arguments.
//!
//! CreateProcessW takes one string that the program splits again (CommandLineToArgvW /
//! the C runtime rules). Quoting each argument by those rules means a user's argument
//! arrives as exactly one argument — no shell ever sees it.

/// Why a command cannot be expressed exactly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CmdlineError {
    #[error("the program path {0:?} contains a double quote, which Windows cannot pass")]
    QuoteInProgram(String),
    #[error("{0:?} contains a NUL character")]
    Nul(String),
    #[error(
        "{0:?} is a batch file, whose arguments cmd.exe re-parses: run it as `cmd.exe /d /c <file>` or as a script"
    )]
    BatchFile(String),
}

/// The command line for `program` with `args`, each arriving as exactly one argument.
pub fn command_line(program: &str, args: &[&str]) -> Result<String, CmdlineError> {
    if program.contains('"') {
        return Err(CmdlineError::QuoteInProgram(program.into()));
    }
    let lower = program.to_ascii_lowercase();
    if lower.ends_with(".bat") || lower.ends_with(".cmd") {
        return Err(CmdlineError::BatchFile(program.into()));
    }
    for s in std::iter::once(&program).chain(args) {
        if s.contains('\0') {
            return Err(CmdlineError::Nul((*s).into()));
        }
    }
    // The program name ends at the first space unless quoted, and takes no escapes.
    let mut line = format!("\"{program}\"");
    for arg in args {
        line.push(' ');
        quote_into(arg, &mut line);
    }
    Ok(line)
}

fn quote_into(arg: &str, out: &mut String) {
    let plain = !arg.is_empty() && !arg.contains([' ', '\t', '\n', '\u{b}', '"']);
    if plain {
        out.push_str(arg);
        return;
    }
    out.push('"');
    let mut backslashes = 0;
    for c in arg.chars() {
        match c {
            '\\' => backslashes += 1,
            '"' => {
                // Backslashes before a quote are escapes: double them, then escape the quote.
                out.extend(std::iter::repeat_n('\\', backslashes * 2 + 1));
                out.push('"');
                backslashes = 0;
            }
            _ => {
                out.extend(std::iter::repeat_n('\\', backslashes));
                out.push(c);
                backslashes = 0;
            }
        }
    }
    // Backslashes before the closing quote must be doubled too.
    out.extend(std::iter::repeat_n('\\', backslashes * 2));
    out.push('"');
}

/// Splits a command line the way the C runtime does (argv[1..]); used to prove the quoting.
#[cfg(test)]
fn split_args(line: &str) -> Vec<String> {
    let mut args = vec![];
    let mut chars = line.chars().peekable();
    // Skip the quoted program name.
    if chars.peek() == Some(&'"') {
        chars.next();
        for c in chars.by_ref() {
            if c == '"' {
                break;
            }
        }
    }
    loop {
        while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
            chars.next();
        }
        if chars.peek().is_none() {
            return args;
        }
        let mut arg = String::new();
        let mut quoted = false;
        let mut backslashes = 0usize;
        while let Some(&c) = chars.peek() {
            if c == '\\' {
                backslashes += 1;
                chars.next();
                continue;
            }
            if c == '"' {
                arg.extend(std::iter::repeat_n('\\', backslashes / 2));
                if backslashes % 2 == 1 {
                    arg.push('"');
                } else {
                    quoted = !quoted;
                }
                backslashes = 0;
                chars.next();
                continue;
            }
            arg.extend(std::iter::repeat_n('\\', backslashes));
            backslashes = 0;
            if !quoted && (c == ' ' || c == '\t') {
                break;
            }
            arg.push(c);
            chars.next();
        }
        arg.extend(std::iter::repeat_n('\\', backslashes));
        args.push(arg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_argument_round_trips_exactly() {
        let args = [
            "plain",
            "",
            "two words",
            r#"say "hi""#,
            r"C:\Program Files\",
            r"trailing\\",
            r#"\"already escaped\""#,
            "tab\there",
            r#"a & b | c > d"#,
            r#"" & calc.exe & ""#,
        ];
        let line = command_line(r"C:\Program Files\App\app.exe", &args).expect("quotes");
        assert!(line.starts_with(r#""C:\Program Files\App\app.exe" "#), "{line}");
        assert_eq!(split_args(&line), args);
    }

    #[test]
    fn refuses_what_cannot_be_passed_exactly() {
        assert_eq!(
            command_line(r#"C:\a"b.exe"#, &[]),
            Err(CmdlineError::QuoteInProgram(r#"C:\a"b.exe"#.into()))
        );
        assert!(matches!(command_line(r"C:\x\install.CMD", &["a"]), Err(CmdlineError::BatchFile(_))));
        assert!(matches!(command_line("a.exe", &["nul\0"]), Err(CmdlineError::Nul(_))));
    }
}
