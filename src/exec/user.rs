//! Resolving a Dockerfile `USER` (`name`, `uid`, `name:group`, `uid:gid`) against the stage rootfs's
//! own `/etc/passwd` and `/etc/group`, as Docker does.
//!
//! kbuild never asks the host's NSS: the names that matter are the image's, and a static binary has
//! no NSS anyway. The caller reads the two files (safely, inside the rootfs) and passes their text.

/// The identity a RUN executes as.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups: every group in /etc/group that lists the user by name.
    pub groups: Vec<u32>,
    /// The home directory from /etc/passwd, `/` when the user has no entry.
    pub home: String,
}

impl User {
    /// root, with root's home.
    pub fn root() -> User {
        User {
            uid: 0,
            gid: 0,
            groups: Vec::new(),
            home: "/root".into(),
        }
    }
}

/// A USER value that names a user or group the rootfs does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error(
        "unable to find user {name}: no matching entries in the rootfs's /etc/passwd\n\
         hint: create the user in an earlier RUN (useradd/adduser) or use a numeric uid"
    )]
    UnknownUser { name: String },
    #[error(
        "unable to find group {name}: no matching entries in the rootfs's /etc/group\n\
         hint: create the group in an earlier RUN or use a numeric gid"
    )]
    UnknownGroup { name: String },
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    passwd.lines().filter_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if line.starts_with('#') || fields.len() < 7 {
            return None;
        }
        Some(PasswdEntry {
            name: fields[0],
            uid: fields[2].parse().ok()?,
            gid: fields[3].parse().ok()?,
            home: fields[5],
        })
    })
}

/// (name, gid, members) of each /etc/group line.
fn group_entries(group: &str) -> impl Iterator<Item = (&str, u32, Vec<&str>)> {
    group.lines().filter_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if line.starts_with('#') || fields.len() < 4 {
            return None;
        }
        let members = fields[3].split(',').filter(|m| !m.is_empty()).collect();
        Some((fields[0], fields[2].parse().ok()?, members))
    })
}

/// Resolves a USER value. `passwd` and `group` are the rootfs's files (empty when missing).
///
/// Follows Docker (moby's `user.GetExecUser`): a numeric uid without a passwd entry is allowed and
/// gets gid 0 and home `/`; a name must exist; an explicit group replaces the primary group and
/// then no supplementary groups are added.
pub fn resolve(spec: &str, passwd: &str, group: &str) -> Result<User, UserError> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let numeric_uid = user_part.parse::<u32>().ok();
    let entry = passwd_entries(passwd).find(|e| match numeric_uid {
        Some(uid) => e.uid == uid,
        None => e.name == user_part,
    });
    let (uid, mut gid, home, name) = match (&entry, numeric_uid) {
        (Some(e), _) => (e.uid, e.gid, e.home.to_string(), Some(e.name.to_string())),
        (None, Some(uid)) => (uid, 0, "/".to_string(), None),
        (None, None) => {
            return Err(UserError::UnknownUser {
                name: user_part.to_string(),
            });
        }
    };
    let mut groups = Vec::new();
    match group_part {
        Some(g) if !g.is_empty() => {
            gid = match g.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => group_entries(group)
                    .find(|(n, _, _)| *n == g)
                    .map(|(_, gid, _)| gid)
                    .ok_or_else(|| UserError::UnknownGroup {
                        name: g.to_string(),
                    })?,
            };
        }
        _ => {
            if let Some(name) = &name {
                groups = group_entries(group)
                    .filter(|(_, g, members)| *g != gid && members.contains(&name.as_str()))
                    .map(|(_, g, _)| g)
                    .collect();
            }
        }
    }
    Ok(User {
        uid,
        gid,
        groups,
        home: if home.is_empty() { "/".into() } else { home },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                          app:x:1000:1000:App:/home/app:/bin/sh\n\
                          # comment\n\
                          nohome:x:1001:1001:::/bin/sh\n";
    const GROUP: &str = "root:x:0:\napp:x:1000:\nwheel:x:10:app,other\nstaff:x:50:app\n";

    #[test]
    fn users_resolve_like_docker() {
        let cases: &[(&str, u32, u32, &[u32], &str)] = &[
            ("root", 0, 0, &[], "/root"),
            ("", 0, 0, &[], "/root"),
            ("app", 1000, 1000, &[10, 50], "/home/app"),
            ("1000", 1000, 1000, &[10, 50], "/home/app"),
            ("app:staff", 1000, 50, &[], "/home/app"),
            ("app:7", 1000, 7, &[], "/home/app"),
            ("4242", 4242, 0, &[], "/"),
            ("4242:4242", 4242, 4242, &[], "/"),
            ("nohome", 1001, 1001, &[], "/"),
        ];
        for (spec, uid, gid, groups, home) in cases {
            let user = resolve(spec, PASSWD, GROUP).unwrap();
            assert_eq!(
                (
                    user.uid,
                    user.gid,
                    user.groups.as_slice(),
                    user.home.as_str()
                ),
                (*uid, *gid, *groups, *home),
                "USER {spec}"
            );
        }
    }

    #[test]
    fn unknown_names_are_errors_with_hints() {
        let err = resolve("ghost", PASSWD, GROUP).unwrap_err();
        assert_eq!(
            err,
            UserError::UnknownUser {
                name: "ghost".into()
            }
        );
        assert!(err.to_string().contains("hint:"));
        let err = resolve("app:ghosts", PASSWD, GROUP).unwrap_err();
        assert_eq!(
            err,
            UserError::UnknownGroup {
                name: "ghosts".into()
            }
        );
        // A rootfs without /etc/passwd still accepts numeric ids.
        assert_eq!(resolve("12:34", "", "").unwrap().gid, 34);
    }
}
