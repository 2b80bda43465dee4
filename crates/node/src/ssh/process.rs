//! Starting a session's process as the requested OS user, like a real login: the user's
//! uid, gid, supplementary groups and shell from the system's user database, a clean
//! environment (HOME, USER, LOGNAME, SHELL, PATH, TERM), the home directory as the
//! working directory, and a PTY when the client asked for one.
//!
//! Dropping privileges needs `initgroups`, `setgid` and `setuid` between fork and exec.
//! This crate has no unsafe code, so a node running as root starts the process through
//! util-linux's `setpriv --reuid --regid --init-groups` (on every Debian and Ubuntu),
//! which does exactly that. A node not running as root can serve only its own user.

use nix::unistd::{Uid, User};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;

/// Where `setpriv` is looked for.
const SETPRIV: [&str; 2] = ["/usr/bin/setpriv", "/bin/setpriv"];
/// OpenSSH's sftp server, run as the user for the `sftp` subsystem.
const SFTP_SERVERS: [&str; 3] = [
    "/usr/lib/openssh/sftp-server",
    "/usr/libexec/openssh/sftp-server",
    "/usr/lib/ssh/sftp-server",
];
const ROOT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const USER_PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/games";

/// An OS account a session runs as.
#[derive(Debug, Clone)]
pub struct LoginUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    pub shell: PathBuf,
}

/// Why a session's process could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("there is no OS user {0:?} on this node")]
    NoSuchUser(String),
    #[error(
        "this node runs as {running} and can start sessions only as that user, not {login:?}; run the node as root to serve other logins"
    )]
    NotRoot { running: String, login: String },
    #[error("setpriv (util-linux) is missing; install util-linux so the node can drop privileges")]
    NoSetpriv,
    #[error("the sftp subsystem needs OpenSSH's sftp-server (package openssh-sftp-server)")]
    NoSftpServer,
    #[error("cannot look up user {login:?}: {reason}")]
    Lookup { login: String, reason: String },
    #[error("cannot start the session: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot open a PTY: {0}")]
    Pty(String),
}

impl LoginUser {
    /// The account `login` from the system's user database.
    pub fn lookup(login: &str) -> Result<LoginUser, SpawnError> {
        let user = User::from_name(login)
            .map_err(|err| SpawnError::Lookup {
                login: login.to_string(),
                reason: err.to_string(),
            })?
            .ok_or_else(|| SpawnError::NoSuchUser(login.to_string()))?;
        let shell = if user.shell.as_os_str().is_empty() {
            PathBuf::from("/bin/sh")
        } else {
            user.shell.clone()
        };
        Ok(LoginUser {
            name: user.name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            home: user.dir,
            shell,
        })
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub enum Program {
    /// The user's login shell.
    Shell,
    /// A command line, run by the user's shell (`shell -c`), as OpenSSH does.
    Command(String),
    /// OpenSSH's sftp server.
    Sftp,
}

/// Builds the command for `program` as `user`, with `env` added to the login
/// environment.
pub fn command(
    user: &LoginUser,
    program: &Program,
    env: &BTreeMap<String, String>,
) -> Result<tokio::process::Command, SpawnError> {
    let running = Uid::effective();
    let (binary, args): (PathBuf, Vec<String>) = match program {
        Program::Shell => (user.shell.clone(), vec!["-l".to_string()]),
        Program::Command(line) => (user.shell.clone(), vec!["-c".to_string(), line.clone()]),
        Program::Sftp => (
            SFTP_SERVERS
                .iter()
                .map(PathBuf::from)
                .find(|path| path.exists())
                .ok_or(SpawnError::NoSftpServer)?,
            Vec::new(),
        ),
    };
    let mut command = if running.as_raw() == user.uid {
        let mut command = tokio::process::Command::new(&binary);
        command.args(&args);
        command
    } else if running.is_root() {
        let setpriv = SETPRIV
            .iter()
            .find(|path| std::path::Path::new(path).exists())
            .ok_or(SpawnError::NoSetpriv)?;
        let mut command = tokio::process::Command::new(setpriv);
        command
            .arg(format!("--reuid={}", user.uid))
            .arg(format!("--regid={}", user.gid))
            .arg("--init-groups")
            .arg("--")
            .arg(&binary)
            .args(&args);
        command
    } else {
        let running = User::from_uid(running)
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| running.to_string());
        return Err(SpawnError::NotRoot {
            running,
            login: user.name.clone(),
        });
    };
    let path = if user.uid == 0 { ROOT_PATH } else { USER_PATH };
    command
        .env_clear()
        .env("HOME", &user.home)
        .env("USER", &user.name)
        .env("LOGNAME", &user.name)
        .env("SHELL", &user.shell)
        .env("PATH", path)
        .envs(env)
        .current_dir(if user.home.is_dir() {
            user.home.clone()
        } else {
            PathBuf::from("/")
        })
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    Ok(command)
}

/// Client-sent environment variables a session accepts (OpenSSH's usual `AcceptEnv`).
pub fn accepted_env(name: &str) -> bool {
    name == "LANG" || name.starts_with("LC_") || name == "COLORTERM"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_user_is_found_and_unknown_users_are_named() {
        let me = User::from_uid(Uid::current()).unwrap().unwrap();
        let found = LoginUser::lookup(&me.name).unwrap();
        assert_eq!(found.uid, me.uid.as_raw());
        let err = LoginUser::lookup("no-such-user-jumpgate").unwrap_err();
        assert!(err.to_string().contains("no OS user"), "{err}");
    }

    #[test]
    fn only_locale_variables_are_accepted_from_clients() {
        assert!(accepted_env("LANG"));
        assert!(accepted_env("LC_ALL"));
        assert!(!accepted_env("LD_PRELOAD"));
        assert!(!accepted_env("PATH"));
    }

    #[tokio::test]
    async fn a_command_runs_with_a_login_environment() {
        let me = User::from_uid(Uid::current()).unwrap().unwrap();
        let user = LoginUser::lookup(&me.name).unwrap();
        let mut env = BTreeMap::new();
        env.insert("LANG".to_string(), "C.UTF-8".to_string());
        let mut cmd = command(
            &user,
            &Program::Command("echo $USER:$HOME:$LANG:$(pwd)".to_string()),
            &env,
        )
        .unwrap();
        let out = cmd.stdout(Stdio::piped()).output().await.unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let home = user.home.display().to_string();
        assert_eq!(
            text.trim(),
            format!("{}:{home}:C.UTF-8:{home}", user.name),
            "{text}"
        );
    }
}
