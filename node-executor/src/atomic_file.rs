//! Files the executor writes so that a reader never sees half of one: written beside the target,
//! flushed, then renamed over it (records, ownership files, the test store).

use std::fs;
use std::io::Write;
use std::path::Path;

/// Writes a file so that a reader sees the old or the new content, never a torn one
/// (write a sibling, flush it to disk, rename it over the target).
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, path)
}
