//! Reading a directory's security descriptor in SDDL, the text form Windows gives it
//! (`O:BAD:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)`): who owns it, whether it inherits from its parent,
//! and who besides the trusted principals may create, change or delete anything in it. Plain
//! text, so the rules are tested on Linux; Windows supplies the string
//! (`ConvertSecurityDescriptorToStringSecurityDescriptorW`).

use super::DirSecurity;

/// LocalSystem.
pub const SYSTEM: &str = "S-1-5-18";
/// BUILTIN\Administrators.
pub const ADMINISTRATORS: &str = "S-1-5-32-544";

/// Access bits that let a principal put something into a directory or change it: add a file or
/// a subfolder (also write or append a file's data), delete a child or the folder, change its
/// permissions or owner, and the generic all/write rights.
const WRITE_BITS: u32 = 0x0000_0002
    | 0x0000_0004
    | 0x0000_0040
    | 0x0001_0000
    | 0x0004_0000
    | 0x0008_0000
    | 0x1000_0000
    | 0x4000_0000;

/// The SID an SDDL alias stands for (the aliases a file's descriptor uses).
fn alias(sid: &str) -> &str {
    match sid {
        "SY" => SYSTEM,
        "BA" => ADMINISTRATORS,
        "BU" => "S-1-5-32-545",
        "BG" => "S-1-5-32-546",
        "PU" => "S-1-5-32-547",
        "AU" => "S-1-5-11",
        "WD" => "S-1-1-0",
        "IU" => "S-1-5-4",
        "SU" => "S-1-5-6",
        "NU" => "S-1-5-2",
        "AN" => "S-1-5-7",
        "LS" => "S-1-5-19",
        "NS" => "S-1-5-20",
        "CO" => "S-1-3-0",
        "CG" => "S-1-3-1",
        "OW" => "S-1-3-4",
        other => other,
    }
}

/// A SID as people know it, for messages.
pub fn display(sid: &str) -> String {
    let name = match sid {
        SYSTEM => "NT AUTHORITY\\SYSTEM",
        ADMINISTRATORS => "BUILTIN\\Administrators",
        "S-1-5-32-545" => "BUILTIN\\Users",
        "S-1-5-32-546" => "BUILTIN\\Guests",
        "S-1-5-11" => "NT AUTHORITY\\Authenticated Users",
        "S-1-1-0" => "Everyone",
        "S-1-5-4" => "NT AUTHORITY\\INTERACTIVE",
        "S-1-5-19" => "NT AUTHORITY\\LOCAL SERVICE",
        "S-1-5-20" => "NT AUTHORITY\\NETWORK SERVICE",
        _ => return sid.to_string(),
    };
    format!("{name} ({sid})")
}

/// The SID at the start of `s`: `S-1-5-21-…` or a two-letter alias.
fn sid_prefix(s: &str) -> &str {
    match s.strip_prefix("S-") {
        Some(tail) => {
            let len = tail.find(|c: char| !(c.is_ascii_digit() || c == '-')).unwrap_or(tail.len());
            &s[..2 + len]
        }
        None => s.get(..2).unwrap_or(s),
    }
}

/// The access mask of an SDDL rights field: hexadecimal (`0x1200a9`) or two-letter codes.
fn rights(field: &str) -> Result<u32, String> {
    if let Some(hex) = field.strip_prefix("0x").or_else(|| field.strip_prefix("0X")) {
        return u32::from_str_radix(hex, 16).map_err(|_| format!("bad access mask {field:?}"));
    }
    let bytes = field.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return Err(format!("bad access rights {field:?}"));
    }
    bytes.chunks(2).try_fold(0u32, |mask, code| {
        let bit = match code {
            b"GA" => 0x1000_0000,
            b"GR" => 0x8000_0000,
            b"GW" => 0x4000_0000,
            b"GX" => 0x2000_0000,
            b"RC" => 0x0002_0000,
            b"SD" => 0x0001_0000,
            b"WD" => 0x0004_0000,
            b"WO" => 0x0008_0000,
            b"FA" => 0x001f_01ff,
            b"FR" => 0x0012_0089,
            b"FW" => 0x0012_0116,
            b"FX" => 0x0012_00a0,
            b"CC" => 0x0000_0001,
            b"DC" => 0x0000_0002,
            b"LC" => 0x0000_0004,
            b"SW" => 0x0000_0008,
            b"RP" => 0x0000_0010,
            b"WP" => 0x0000_0020,
            b"DT" => 0x0000_0040,
            b"LO" => 0x0000_0080,
            b"CR" => 0x0000_0100,
            _ => {
                return Err(format!("unknown access right {:?} in {field:?}", String::from_utf8_lossy(code)));
            }
        };
        Ok(mask | bit)
    })
}

/// Who owns the directory described by `sddl`, whether it inherits, and who untrusted may write.
/// Trusted: SYSTEM, Administrators, and `me` when `me_trusted` (an executor that is itself an
/// administrator). CREATOR OWNER and OWNER RIGHTS entries give only the creator of a child rights
/// on that child, so they count as nobody.
pub fn dir_security(sddl: &str, me: &str, me_trusted: bool) -> Result<DirSecurity, String> {
    let trusted = |sid: &str| sid == SYSTEM || sid == ADMINISTRATORS || (me_trusted && sid == me);
    let owner = sddl.strip_prefix("O:").map(sid_prefix).filter(|o| !o.is_empty());
    let owner = alias(owner.ok_or_else(|| format!("no owner in {sddl:?}"))?).to_string();
    let dacl = sddl.split_once("D:").map(|(_, d)| d).ok_or_else(|| format!("no DACL in {sddl:?}"))?;
    let flags = dacl.split('(').next().unwrap_or_default();
    if flags.contains("NO_ACCESS_CONTROL") {
        return Ok(DirSecurity {
            owner_trusted: trusted(&owner),
            owner: display(&owner),
            inherits: false,
            untrusted_writers: vec!["Everyone (the DACL is NULL: no access control at all)".into()],
        });
    }
    let mut untrusted_writers = Vec::new();
    for ace in dacl.split('(').skip(1).map(|a| a.split(')').next().unwrap_or_default()) {
        let fields: Vec<&str> = ace.split(';').collect();
        let [kind, _, mask, _, _, sid, ..] = fields[..] else {
            return Err(format!("bad ACE ({ace}) in {sddl:?}"));
        };
        let sid = alias(sid);
        let allows = matches!(kind, "A" | "OA" | "XA" | "ZA");
        if !allows || trusted(sid) || matches!(sid, "S-1-3-0" | "S-1-3-4") {
            continue;
        }
        if rights(mask)? & WRITE_BITS != 0 {
            let who = display(sid);
            if !untrusted_writers.contains(&who) {
                untrusted_writers.push(who);
            }
        }
    }
    Ok(DirSecurity {
        owner_trusted: trusted(&owner),
        owner: display(&owner),
        inherits: !flags.contains('P'),
        untrusted_writers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "S-1-5-21-1-2-3-1000";

    #[test]
    fn the_protected_state_directory_passes() {
        let sddl =
            "O:BAG:SYD:PAI(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;0x1200a9;;;BU)(A;OICI;0x1200a9;;;AU)";
        let sec = dir_security(sddl, ME, false).expect("parses");
        assert!(sec.problems().is_empty(), "{:?}", sec.problems());
        assert_eq!(sec.owner, r"BUILTIN\Administrators (S-1-5-32-544)");
    }

    #[test]
    fn programdata_inheritance_lets_every_user_plant_files() {
        // What a folder created under C:\ProgramData inherits by default.
        let sddl = "O:SYG:SYD:AI(A;OICIID;FA;;;SY)(A;OICIID;FA;;;BA)(A;OICIIOID;GA;;;CO)\
                    (A;OICIID;0x1200a9;;;BU)(A;CIID;DCLCRPCR;;;BU)";
        let sec = dir_security(sddl, ME, false).expect("parses");
        assert!(sec.inherits);
        assert_eq!(sec.untrusted_writers, [r"BUILTIN\Users (S-1-5-32-545)"]);
        let problems = sec.problems().join("; ");
        assert!(problems.contains("inherits its permissions"), "{problems}");
        assert!(problems.contains(r"BUILTIN\Users (S-1-5-32-545) can create"), "{problems}");
    }

    #[test]
    fn a_foreign_owner_a_null_dacl_and_hex_masks_are_caught() {
        let foreign = dir_security("O:S-1-5-21-1-2-3-1001G:SYD:P(A;OICI;FA;;;SY)", ME, true).expect("parses");
        assert!(!foreign.owner_trusted);
        assert_eq!(foreign.owner, "S-1-5-21-1-2-3-1001");
        let mine = dir_security(&format!("O:{ME}D:P(A;OICI;FA;;;{ME})"), ME, true).expect("parses");
        assert!(mine.problems().is_empty(), "an administrator executor's own directory");
        let not_trusted = dir_security(&format!("O:{ME}D:P(A;OICI;FA;;;{ME})"), ME, false).expect("parses");
        assert_eq!(not_trusted.problems().len(), 2, "{:?}", not_trusted.problems());
        let null = dir_security("O:SYD:NO_ACCESS_CONTROL", ME, false).expect("parses");
        assert!(null.untrusted_writers[0].contains("NULL"));
        let hex = dir_security("O:SYD:P(A;OICI;0x1301bf;;;LS)(D;OICI;FA;;;WD)", ME, false).expect("parses");
        assert_eq!(
            hex.untrusted_writers,
            [r"NT AUTHORITY\LOCAL SERVICE (S-1-5-19)"],
            "deny entries grant nothing"
        );
        let read_only = dir_security("O:SYD:P(A;OICI;FR;;;WD)(A;OICIIO;GA;;;CO)", ME, false).expect("parses");
        assert!(read_only.problems().is_empty(), "{:?}", read_only.problems());
        assert!(dir_security("O:SYD:P(A;OICI;ZZ;;;WD)", ME, false).is_err());
    }
}
