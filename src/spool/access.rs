//! Whether this process may write the spool's directory and files as start-up will: its
//! permissions, the attributes that refuse even root, and what kind of file is there.

use std::io;
use std::path::Path;

const IMMUTABLE: &str =
    "it has the immutable attribute (chattr +i), which refuses every write, even root's";
const APPEND_ONLY: &str = "it has the append-only attribute (chattr +a), which refuses the \
                           spool's writes (opening its files to write, renaming and removing in \
                           its directory), even root's";
const NOT_A_FILE: &str = "it is not a regular file";

/// Whether this process may write at `path`: a directory (`file` false) to make entries in, or
/// one of the spool's files (`file`) to read and write.
pub(super) fn may_write(path: &Path, file: bool) -> io::Result<()> {
    may_write_as(path, file, true)
}

/// Whether this process may make the spool's directory under `path`, the nearest parent that
/// exists: the append-only attribute allows making entries there (only renaming and removing are
/// refused, which the spool does in its own directory, not in a parent).
pub(super) fn may_make_in(path: &Path) -> io::Result<()> {
    may_write_as(path, false, false)
}

fn may_write_as(path: &Path, file: bool, append_refused: bool) -> io::Result<()> {
    use rustix::fs::Access;
    // Start-up's open of a FIFO at the lock waited for a reader that never came: never ready,
    // and deaf to the first SIGTERM (found by a review).
    if file && std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        return Err(io::Error::other(NOT_A_FILE));
    }
    // The access check grants an append-only file's write (the spool's opens, renames and
    // removes are refused later), and says EPERM for an immutable one as a seccomp profile
    // refusing the check does: the attributes are read first.
    match attribute(path) {
        Some(Attribute::Immutable) => return Err(io::Error::other(IMMUTABLE)),
        Some(Attribute::AppendOnly) if append_refused => return Err(io::Error::other(APPEND_ONLY)),
        _ => {}
    }
    let wanted = if file {
        Access::READ_OK | Access::WRITE_OK
    } else {
        Access::WRITE_OK | Access::EXEC_OK
    };
    // As the process's effective user and capabilities (a non-root user given
    // CAP_DAC_OVERRIDE writes where its uid may not), which its writes will be checked as.
    // That takes faccessat2, which an older container runtime's seccomp profile refuses
    // with EPERM: no answer, and no refusal (opening the spool says what fails).
    match rustix::fs::accessat(rustix::fs::CWD, path, wanted, rustix::fs::AtFlags::EACCESS) {
        Err(e) if e == rustix::io::Errno::PERM || e == rustix::io::Errno::NOSYS => Ok(()),
        result => result.map_err(io::Error::from),
    }
}

/// The attributes that refuse writes whatever the permissions.
enum Attribute {
    Immutable,
    AppendOnly,
}

/// The immutable or append-only attribute on `path`: from statx, which needs no read permission
/// on it (another user's directory is told too), else from the inode's flags where statx is
/// refused (an old kernel, a seccomp profile); nothing when neither tells.
fn attribute(path: &Path) -> Option<Attribute> {
    use rustix::fs::{statx, AtFlags, IFlags, StatxAttributes, StatxFlags, CWD};
    let (immutable, append) = match statx(CWD, path, AtFlags::empty(), StatxFlags::BASIC_STATS) {
        Ok(stat) => {
            let attributes = stat.stx_attributes & stat.stx_attributes_mask;
            (
                attributes.contains(StatxAttributes::IMMUTABLE),
                attributes.contains(StatxAttributes::APPEND),
            )
        }
        Err(_) => {
            let flags = inode_flags(path)?;
            (
                flags.contains(IFlags::IMMUTABLE),
                flags.contains(IFlags::APPEND),
            )
        }
    };
    if immutable {
        Some(Attribute::Immutable)
    } else if append {
        Some(Attribute::AppendOnly)
    } else {
        None
    }
}

/// `path`'s inode flags (`lsattr`), opened without waiting: a FIFO there must not hang
/// `--check-config`.
fn inode_flags(path: &Path) -> Option<rustix::fs::IFlags> {
    use rustix::fs::{ioctl_getflags, open, Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    open(path, flags, Mode::empty())
        .and_then(ioctl_getflags)
        .ok()
}
