//! Interim `local` store until `datastore::config::connect()` and the SQLite backend land:
//! a JSON file at `CALICO_DATASTORE_PATH` holding keys with revisions, read and rewritten
//! (atomically, by rename) on every call. One calicoctl process at a time; no watches or
//! leases (calicoctl needs neither).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use datastore::{Datastore, Error, KeyValue, Lease, LeaseId, Listing, Result, Revision, Watch};
use serde::{Deserialize, Serialize};

/// A single-file store for calicoctl (see module docs).
pub struct FileStore {
    path: PathBuf,
}

#[derive(Default, Serialize, Deserialize)]
struct State {
    revision: Revision,
    kvs: BTreeMap<String, Entry>,
}

#[derive(Clone, Serialize, Deserialize)]
struct Entry {
    value: String,
    create_revision: Revision,
    mod_revision: Revision,
}

impl Entry {
    fn kv(&self, key: &str) -> KeyValue {
        KeyValue {
            key: key.to_string(),
            value: self.value.clone().into_bytes(),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            lease: None,
        }
    }
}

fn backend(e: impl std::fmt::Display) -> Error {
    Error::Backend(e.to_string())
}

impl FileStore {
    /// Opens (or will create) the store file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> FileStore {
        FileStore { path: path.into() }
    }

    fn load(&self) -> Result<State> {
        match std::fs::read(&self.path) {
            Ok(bytes) if bytes.is_empty() => Ok(State::default()),
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(backend),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(backend(format!("{}: {e}", self.path.display()))),
        }
    }

    fn save(&self, state: &State) -> Result<()> {
        if let Some(dir) = self.path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(backend)?;
        }
        let tmp = self.path.with_extension("tmp");
        let bytes = serde_json::to_vec(state).map_err(backend)?;
        std::fs::write(&tmp, bytes).map_err(backend)?;
        std::fs::rename(&tmp, &self.path).map_err(backend)
    }

    fn text(value: Vec<u8>) -> Result<String> {
        String::from_utf8(value).map_err(backend)
    }
}

fn unsupported<T>() -> Result<T> {
    Err(Error::Backend(
        "watches and leases are not supported by calicoctl's interim file store".into(),
    ))
}

#[async_trait]
impl Datastore for FileStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self.load()?.kvs.get(key).map(|e| e.kv(key)))
    }

    async fn list(&self, prefix: &str) -> Result<Listing> {
        let state = self.load()?;
        let items = state
            .kvs
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, e)| e.kv(k))
            .collect();
        Ok(Listing {
            items,
            revision: state.revision,
        })
    }

    async fn create(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> Result<Revision> {
        if lease.is_some() {
            return unsupported();
        }
        let mut state = self.load()?;
        if state.kvs.contains_key(key) {
            return Err(Error::AlreadyExists {
                key: key.to_string(),
            });
        }
        state.revision += 1;
        let rev = state.revision;
        state.kvs.insert(
            key.to_string(),
            Entry {
                value: Self::text(value)?,
                create_revision: rev,
                mod_revision: rev,
            },
        );
        self.save(&state)?;
        Ok(rev)
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Revision,
        lease: Option<LeaseId>,
    ) -> Result<Revision> {
        if lease.is_some() {
            return unsupported();
        }
        let mut state = self.load()?;
        state.revision += 1;
        let rev = state.revision;
        let Some(entry) = state.kvs.get_mut(key) else {
            return Err(Error::NotFound {
                key: key.to_string(),
            });
        };
        if entry.mod_revision != expected {
            return Err(Error::Conflict {
                key: key.to_string(),
                expected,
                actual: entry.mod_revision,
            });
        }
        entry.value = Self::text(value)?;
        entry.mod_revision = rev;
        self.save(&state)?;
        Ok(rev)
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let mut state = self.load()?;
        let Some(entry) = state.kvs.get(key).cloned() else {
            return Err(Error::NotFound {
                key: key.to_string(),
            });
        };
        if let Some(exp) = expected
            && exp != entry.mod_revision
        {
            return Err(Error::Conflict {
                key: key.to_string(),
                expected: exp,
                actual: entry.mod_revision,
            });
        }
        state.kvs.remove(key);
        state.revision += 1;
        self.save(&state)?;
        Ok(entry.kv(key))
    }

    async fn watch(&self, _prefix: &str, _from: Revision) -> Result<Watch> {
        unsupported()
    }

    async fn grant_lease(&self, _ttl: Duration) -> Result<Lease> {
        unsupported()
    }

    async fn keep_alive(&self, _lease: LeaseId) -> Result<()> {
        unsupported()
    }

    async fn revoke_lease(&self, _lease: LeaseId) -> Result<()> {
        unsupported()
    }

    async fn revision(&self) -> Result<Revision> {
        Ok(self.load()?.revision)
    }
}
