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
    #[error(
        "program {0:?} was not found: give its absolute path, or a name found in System32, the Windows folder or PATH"
    )]
    NotFound(String),
}

/// The file Windows opens for `path`: it drops trailing dots and spaces (`x.bat.` is `x.bat`).
fn as_opened(path: &str) -> &str {
    path.trim_end_matches(['.', ' '])
}

/// Whether a Windows path names one file wherever the process runs: `C:\…`, `\\server\…`, or
/// rooted on the current drive (`\Windows\…`; Wine also takes `/usr/…` so).
fn is_absolute(path: &str) -> bool {
    let b = path.as_bytes();
    matches!(b, [d, b':', b'\\' | b'/', ..] if d.is_ascii_alphabetic()) || path.starts_with(['\\', '/'])
}

/// The program as `CreateProcessW` will be told to run it (`lpApplicationName`): an absolute
/// path. A bare name is looked for in `search` (System32, the Windows folder, then PATH), `.exe`
/// added when it has no extension — never in the executor's own folder or the current one, which
/// Windows would otherwise search first. A batch file is refused by the name Windows opens.
pub fn resolve_program(
    program: &str,
    search: &[String],
    exists: impl Fn(&str) -> bool,
) -> Result<String, CmdlineError> {
    let opened = as_opened(program);
    let name = opened.rsplit(['\\', '/']).next().unwrap_or(opened);
    let with_exe = |path: &str| if name.contains('.') { path.to_string() } else { format!("{path}.exe") };
    let found = if opened.contains(['\\', '/', ':']) {
        let path = with_exe(opened);
        (is_absolute(&path) && exists(&path)).then_some(path)
    } else {
        search
            .iter()
            .filter(|dir| is_absolute(dir))
            .map(|dir| with_exe(&format!("{}\\{opened}", dir.trim_end_matches(['\\', '/']))))
            .find(|path| exists(path))
    };
    let found = found.ok_or_else(|| CmdlineError::NotFound(program.into()))?;
    let lower = as_opened(&found).to_ascii_lowercase();
    if lower.ends_with(".bat") || lower.ends_with(".cmd") {
        return Err(CmdlineError::BatchFile(program.into()));
    }
    Ok(found)
}

/// The command line for `program` with `args`, each arriving as exactly one argument.
pub fn command_line(program: &str, args: &[&str]) -> Result<String, CmdlineError> {
    if program.contains('"') {
        return Err(CmdlineError::QuoteInProgram(program.into()));
    }
    let lower = as_opened(program).to_ascii_lowercase();
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

    #[test]
    fn a_program_resolves_to_an_absolute_path_and_batch_files_are_refused_by_the_name_opened() {
        let search = [
            r"C:\Windows\System32".to_string(),
            r"C:\Windows".into(),
            r"C:\Tools\".into(),
            "relative".into(),
        ];
        let files = [
            r"C:\Windows\System32\whoami.exe",
            r"C:\Tools\agent.exe",
            r"C:\Tools\x.bat",
            r"relative\evil.exe",
        ];
        let exists = |p: &str| files.iter().any(|f| f.eq_ignore_ascii_case(p));
        let resolve = |program: &str| resolve_program(program, &search, exists);
        assert_eq!(resolve("whoami").as_deref(), Ok(r"C:\Windows\System32\whoami.exe"));
        assert_eq!(resolve("agent.exe").as_deref(), Ok(r"C:\Tools\agent.exe"));
        assert_eq!(resolve(r"C:\Tools\agent").as_deref(), Ok(r"C:\Tools\agent.exe"));
        assert_eq!(
            resolve(r"C:agent.exe"),
            Err(CmdlineError::NotFound(r"C:agent.exe".into())),
            "drive-relative"
        );
        // Windows opens `x.bat.` and `x.bat ` as x.bat: cmd.exe would parse the arguments again.
        for sneaky in ["x.bat", "x.bat.", "x.bat ", r"C:\Tools\x.bat. . "] {
            assert_eq!(resolve(sneaky), Err(CmdlineError::BatchFile(sneaky.into())), "{sneaky}");
        }
        assert_eq!(
            command_line(r"C:\Tools\x.bat.", &[]),
            Err(CmdlineError::BatchFile(r"C:\Tools\x.bat.".into()))
        );
        // Not found, relative, or only in a relative search entry: refused, never guessed.
        for missing in ["missing", r"tools\agent.exe", "evil"] {
            assert_eq!(resolve(missing), Err(CmdlineError::NotFound(missing.into())), "{missing}");
        }
    }
}
