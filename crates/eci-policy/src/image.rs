//! Image references read the way Docker reads them, and the image list that decides which
//! containers may mount the Docker socket.
//!
//! A reference the user types is normalised like Docker does: `ubuntu` is
//! `docker.io/library/ubuntu:latest`, `user/app` is `docker.io/user/app:latest`, and a first
//! component with a `.` or a `:` (or `localhost`, or an upper-case letter) is a registry host.
//!
//! Matching is by digest, never by name alone: a re-tagged image keeps its own digest, so naming a
//! forbidden image like an allowed one does not pass. Finding digests needs a registry and the
//! local image store, so the caller supplies them as data ([`ImageIdentity`], [`KnownDigests`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

/// The registry that names without a registry host refer to.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// The namespace of Docker Hub's official images (`ubuntu` is `library/ubuntu`).
const OFFICIAL_NAMESPACE: &str = "library";
/// The tag a reference without tag or digest means.
pub const DEFAULT_TAG: &str = "latest";
/// Docker's limit on the length of a full repository name (registry, `/` and path).
const MAX_NAME_LENGTH: usize = 255;
/// Docker's limit on the length of a tag.
const MAX_TAG_LENGTH: usize = 128;

/// Why an image reference or digest is malformed. Each variant names the offending text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// Nothing was given.
    #[error("the image reference is empty")]
    Empty,
    /// A digest that is not `sha256:` with 64 hex digits (or `sha512:` with 128).
    #[error("digest '{0}' is not sha256: with 64 or sha512: with 128 lower-case hex digits")]
    Digest(String),
    /// A tag with characters Docker does not allow, or too long.
    #[error("tag '{0}' is invalid: up to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'")]
    Tag(String),
    /// A registry host that is not a host name or address, with an optional port.
    #[error("registry '{0}' is not a host name with an optional :port")]
    Registry(String),
    /// A repository path component with characters Docker does not allow.
    #[error("repository path component '{0}' is invalid: lower-case letters and digits, separated by '.', '_', '__' or dashes")]
    PathComponent(String),
    /// The repository name has upper-case letters.
    #[error("repository name '{0}' must be lower-case")]
    Uppercase(String),
    /// The full name is longer than Docker allows.
    #[error("repository name '{0}' is longer than 255 characters")]
    TooLong(String),
    /// A name that is a 64-digit hex string, which Docker reserves for image IDs.
    #[error("repository name '{0}' is a 64-digit hex string, which only an image ID may be")]
    HexName(String),
    /// A `*` anywhere but as the whole tag or the whole rule.
    #[error("'{0}': '*' may only stand for the whole tag (name:*) or for every image (*)")]
    Wildcard(String),
}

/// A content digest: `sha256:` and 64 lower-case hex digits (or `sha512:` and 128).
///
/// ```
/// use eci_policy::image::Digest;
/// let d: Digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
/// assert_eq!(d.algorithm(), "sha256");
/// assert!("sha256:ABC".parse::<Digest>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// Parses `algorithm:hex`.
    pub fn parse(text: &str) -> Result<Digest, ImageError> {
        let bad = || ImageError::Digest(text.to_string());
        let (algorithm, hex) = text.split_once(':').ok_or_else(bad)?;
        let length = match algorithm {
            "sha256" => 64,
            "sha512" => 128,
            _ => return Err(bad()),
        };
        let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if hex.len() != length || !hex.bytes().all(lower_hex) {
            return Err(bad());
        }
        Ok(Digest(text.to_string()))
    }

    /// The digest as written (`sha256:...`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The algorithm (`sha256` or `sha512`).
    pub fn algorithm(&self) -> &str {
        self.0
            .split_once(':')
            .map_or("", |(algorithm, _)| algorithm)
    }
}

impl FromStr for Digest {
    type Err = ImageError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Digest::parse(text)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A repository: a registry host and a path in it (`docker.io` and `library/ubuntu`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Repository {
    registry: String,
    path: String,
}

impl Repository {
    /// Parses a repository name without tag or digest, normalising it like Docker does.
    ///
    /// ```
    /// use eci_policy::image::Repository;
    /// assert_eq!(Repository::parse("ubuntu").unwrap().to_string(), "docker.io/library/ubuntu");
    /// assert_eq!(Repository::parse("localhost:5000/app").unwrap().registry(), "localhost:5000");
    /// ```
    pub fn parse(name: &str) -> Result<Repository, ImageError> {
        if name.is_empty() {
            return Err(ImageError::Empty);
        }
        let (registry, path) = split_registry(name);
        check_registry(registry)?;
        check_path(path, name)?;
        let registry = match registry {
            "index.docker.io" => DEFAULT_REGISTRY,
            other => other,
        };
        let path = if registry == DEFAULT_REGISTRY && !path.contains('/') {
            format!("{OFFICIAL_NAMESPACE}/{path}")
        } else {
            path.to_string()
        };
        if registry.len() + 1 + path.len() > MAX_NAME_LENGTH {
            return Err(ImageError::TooLong(name.to_string()));
        }
        Ok(Repository {
            registry: registry.to_string(),
            path,
        })
    }

    /// The registry host, with its port if it has one.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The path inside the registry (`library/ubuntu`).
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.path)
    }
}

/// Splits a name into its registry host and path, the way Docker decides whether the first
/// component is a host: it has a `.` or a `:`, is `localhost`, or has an upper-case letter.
fn split_registry(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first, rest)
        }
        _ => (DEFAULT_REGISTRY, name),
    }
}

fn check_registry(registry: &str) -> Result<(), ImageError> {
    let bad = || ImageError::Registry(registry.to_string());
    let (host, port) = match registry.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') && !port.contains(']') => (host, Some(port)),
        _ => (registry, None),
    };
    if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return Err(bad());
    }
    let valid = if let Some(inner) = host.strip_prefix('[') {
        inner.strip_suffix(']').is_some_and(|ip| {
            !ip.is_empty() && ip.bytes().all(|b| b.is_ascii_hexdigit() || b == b':')
        })
    } else {
        !host.is_empty() && host.split('.').all(is_host_label)
    };
    valid.then_some(()).ok_or_else(bad)
}

fn is_host_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    !bytes.is_empty()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

fn check_path(path: &str, name: &str) -> Result<(), ImageError> {
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ImageError::Uppercase(name.to_string()));
    }
    if path.len() == 64 && path.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ImageError::HexName(name.to_string()));
    }
    for component in path.split('/') {
        if !is_path_component(component) {
            return Err(ImageError::PathComponent(component.to_string()));
        }
    }
    Ok(())
}

/// Lower-case alphanumeric runs joined by one `.`, one `_`, two `_` or any number of `-`.
fn is_path_component(component: &str) -> bool {
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = component.as_bytes();
    let mut i = 0;
    loop {
        let run = bytes[i..].iter().take_while(|b| alnum(b)).count();
        if run == 0 {
            return false;
        }
        i += run;
        if i == bytes.len() {
            return true;
        }
        let separator = bytes[i..].iter().take_while(|b| !alnum(b)).count();
        let valid = match &bytes[i..i + separator] {
            b"." | b"_" | b"__" => true,
            dashes => dashes.iter().all(|b| *b == b'-'),
        };
        if !valid {
            return false;
        }
        i += separator;
    }
}

fn check_tag(tag: &str) -> Result<(), ImageError> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    let valid = !bytes.is_empty()
        && bytes.len() <= MAX_TAG_LENGTH
        && word(bytes[0])
        && bytes.iter().all(|b| word(*b) || *b == b'.' || *b == b'-');
    valid
        .then_some(())
        .ok_or_else(|| ImageError::Tag(tag.to_string()))
}

/// An image reference: a repository with a tag, a digest or both. Without either, the tag is
/// `latest`.
///
/// ```
/// use eci_policy::image::ImageRef;
/// let r: ImageRef = "docker:cli".parse().unwrap();
/// assert_eq!(r.to_string(), "docker.io/library/docker:cli");
/// assert_eq!("ubuntu".parse::<ImageRef>().unwrap(), "docker.io/library/ubuntu:latest".parse().unwrap());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    repository: Repository,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl ImageRef {
    /// Parses `name[:tag][@digest]`.
    pub fn parse(text: &str) -> Result<ImageRef, ImageError> {
        if text.is_empty() {
            return Err(ImageError::Empty);
        }
        if text.contains('*') {
            return Err(ImageError::Wildcard(text.to_string()));
        }
        let (name_and_tag, digest) = match text.split_once('@') {
            Some((rest, digest)) => (rest, Some(Digest::parse(digest)?)),
            None => (text, None),
        };
        let (name, tag) = split_tag(name_and_tag);
        if let Some(tag) = tag {
            check_tag(tag)?;
        }
        let tag = match (tag, &digest) {
            (None, None) => Some(DEFAULT_TAG),
            (tag, _) => tag,
        };
        Ok(ImageRef {
            repository: Repository::parse(name)?,
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// The repository.
    pub fn repository(&self) -> &Repository {
        &self.repository
    }

    /// The tag, if the reference has one (every reference without a digest has one).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if the reference names one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }
}

/// Splits `name[:tag]`: a `:` after the last `/` starts the tag; before it, it is a port.
fn split_tag(text: &str) -> (&str, Option<&str>) {
    let last_slash = text.rfind('/').map_or(0, |i| i + 1);
    match text[last_slash..].rfind(':') {
        Some(colon) => {
            let at = last_slash + colon;
            (&text[..at], Some(&text[at + 1..]))
        }
        None => (text, None),
    }
}

impl FromStr for ImageRef {
    type Err = ImageError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ImageRef::parse(text)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// One entry of `dockerSocketMount.imageList.images`.
///
/// ```
/// use eci_policy::image::ImagePattern;
/// assert_eq!("*".parse::<ImagePattern>().unwrap(), ImagePattern::Any);
/// assert_eq!("testcontainers/ryuk:*".parse::<ImagePattern>().unwrap().to_string(), "docker.io/testcontainers/ryuk:*");
/// assert_eq!("docker:cli".parse::<ImagePattern>().unwrap().to_string(), "docker.io/library/docker:cli");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ImagePattern {
    /// `*`: every image.
    Any,
    /// `name:*`: any tag of the repository.
    AnyTag(Repository),
    /// `name[:tag]`: the digests the registry gives for that tag.
    Tag(Repository, String),
    /// `name@digest`: that image only.
    Digest(Repository, Digest),
}

impl ImagePattern {
    /// Parses an image list entry.
    pub fn parse(text: &str) -> Result<ImagePattern, ImageError> {
        if text == "*" {
            return Ok(ImagePattern::Any);
        }
        if let Some(name) = text.strip_suffix(":*") {
            if name.contains(['*', '@']) {
                return Err(ImageError::Wildcard(text.to_string()));
            }
            return Ok(ImagePattern::AnyTag(Repository::parse(name)?));
        }
        let reference = ImageRef::parse(text)?;
        Ok(match (reference.digest, reference.tag) {
            (Some(digest), _) => ImagePattern::Digest(reference.repository, digest),
            (None, tag) => ImagePattern::Tag(
                reference.repository,
                tag.unwrap_or_else(|| DEFAULT_TAG.to_string()),
            ),
        })
    }

    /// True if the image is the one this entry names. `known` holds the digests the registry
    /// gives for tags; a tag entry matches only an image whose digest is among them, so
    /// re-tagging a different image does not pass.
    pub fn matches(&self, image: &ImageIdentity, known: &KnownDigests) -> bool {
        let repository = image.reference.repository();
        match (self, image.consistent_digest()) {
            (ImagePattern::Any, _) => true,
            (_, None) => false,
            (ImagePattern::AnyTag(repo), Some(digest)) => {
                repo == repository && known.any_tag(repo, digest)
            }
            (ImagePattern::Tag(repo, tag), Some(digest)) => {
                repo == repository && known.tag(repo, tag, digest)
            }
            (ImagePattern::Digest(repo, expected), Some(digest)) => {
                repo == repository && expected == digest
            }
        }
    }
}

impl FromStr for ImagePattern {
    type Err = ImageError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ImagePattern::parse(text)
    }
}

impl fmt::Display for ImagePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImagePattern::Any => f.write_str("*"),
            ImagePattern::AnyTag(repo) => write!(f, "{repo}:*"),
            ImagePattern::Tag(repo, tag) => write!(f, "{repo}:{tag}"),
            ImagePattern::Digest(repo, digest) => write!(f, "{repo}@{digest}"),
        }
    }
}

/// The image a container runs, as the caller knows it: the reference the user gave and the
/// repository digest of the image that reference resolved to in the local store (`None` for an
/// image that never came from a registry, such as a local build).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageIdentity {
    /// The reference the container was created with.
    pub reference: ImageRef,
    /// The repository (manifest) digest of the local image, the same kind of digest a registry
    /// reports for a tag.
    pub digest: Option<Digest>,
}

impl ImageIdentity {
    /// The image's digest, unless the reference names a different one (then something is off and
    /// nothing but `*` matches).
    fn consistent_digest(&self) -> Option<&Digest> {
        let digest = self.digest.as_ref()?;
        match self.reference.digest() {
            Some(named) if named != digest => None,
            _ => Some(digest),
        }
    }
}

/// Digests that tags of allowed repositories resolve to, as the caller learnt them from the
/// registry (never from the local image store, where anyone can re-tag an image).
///
/// ```
/// use eci_policy::image::{Digest, ImageRef, KnownDigests};
/// let digest = Digest::parse(&format!("sha256:{}", "1".repeat(64))).unwrap();
/// let mut known = KnownDigests::default();
/// known.insert(&"docker:cli".parse::<ImageRef>().unwrap(), digest.clone());
/// let repo = "docker".parse::<ImageRef>().unwrap().repository().clone();
/// assert!(known.tag(&repo, "cli", &digest));
/// assert!(!known.tag(&repo, "latest", &digest));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownDigests {
    by_tag: BTreeMap<(Repository, String), BTreeSet<Digest>>,
}

impl KnownDigests {
    /// Records that the registry resolves `reference` (its repository and tag) to `digest`.
    /// A reference without a tag records nothing: only tags need resolving.
    pub fn insert(&mut self, reference: &ImageRef, digest: Digest) {
        if let Some(tag) = reference.tag() {
            self.by_tag
                .entry((reference.repository().clone(), tag.to_string()))
                .or_default()
                .insert(digest);
        }
    }

    /// True if the registry resolves `repository:tag` to `digest`.
    pub fn tag(&self, repository: &Repository, tag: &str, digest: &Digest) -> bool {
        self.by_tag
            .get(&(repository.clone(), tag.to_string()))
            .is_some_and(|digests| digests.contains(digest))
    }

    /// Adds what `other` knows.
    pub fn extend(&mut self, other: KnownDigests) {
        for (key, digests) in other.by_tag {
            self.by_tag.entry(key).or_default().extend(digests);
        }
    }

    /// The digests the registry gave for `repository:tag`.
    pub fn digests_of<'a>(
        &'a self,
        repository: &Repository,
        tag: &str,
    ) -> impl Iterator<Item = &'a Digest> + 'a {
        self.by_tag
            .get(&(repository.clone(), tag.to_string()))
            .into_iter()
            .flatten()
    }

    /// True if the registry resolves some tag of `repository` to `digest`.
    pub fn any_tag(&self, repository: &Repository, digest: &Digest) -> bool {
        let from = (repository.clone(), String::new());
        self.by_tag
            .range(from..)
            .take_while(|((repo, _), _)| repo == repository)
            .any(|(_, digests)| digests.contains(digest))
    }
}

/// Whether an image whose layers (their diff IDs, bottom first) are `layers` is built on an
/// image whose layers are `base`: the base has layers, and they begin the image's. An image of
/// the same layers counts (a `FROM` with only a new command or environment).
///
/// ```
/// use eci_policy::image::built_on;
/// let layers = |ids: &[&str]| ids.iter().map(|id| id.to_string()).collect::<Vec<_>>();
/// assert!(built_on(&layers(&["a", "b", "c"]), &layers(&["a", "b"])));
/// assert!(!built_on(&layers(&["a", "c"]), &layers(&["a", "b"])));
/// assert!(!built_on(&layers(&["a"]), &layers(&[])));
/// ```
pub fn built_on(layers: &[String], base: &[String]) -> bool {
    !base.is_empty() && layers.starts_with(base)
}

/// `dockerSocketMount.imageList`: the images whose containers may bind-mount the Docker socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageList {
    /// The entries, in the document's order.
    pub images: Vec<ImagePattern>,
    /// Also allow local images built from an allowed image (`FROM` it). Finding out what an
    /// image was built from needs the image store, so the caller does it and passes the base
    /// image to [`ImageList::decide`]; this crate only carries the switch.
    pub allow_derived_images: bool,
}

impl Default for ImageList {
    /// No image may mount the socket; derived images follow their base, as in Docker.
    fn default() -> Self {
        ImageList {
            images: Vec::new(),
            allow_derived_images: true,
        }
    }
}

/// Why an image may mount the Docker socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageGrant<'a> {
    /// The image itself matches the entry.
    Listed(&'a ImagePattern),
    /// The image was built from a base image that matches the entry.
    Derived(&'a ImagePattern),
}

impl ImageList {
    /// The tags whose digests the registry must give for `image` to match an entry that names
    /// tags: each `name:tag` entry of the image's repository, and for a `name:*` entry of it
    /// the tag the image was referenced by. The caller asks the registry (through the engine's
    /// `GET /distribution/{reference}/json`, say) and passes the answers to
    /// [`ImageList::decide`] as [`KnownDigests`]. The local image store is never asked: anyone
    /// may tag any image there.
    ///
    /// ```
    /// use eci_policy::image::{ImageIdentity, ImageList, ImageRef};
    /// let list = ImageList {
    ///     images: vec!["docker:cli".parse().unwrap(), "testcontainers/ryuk:*".parse().unwrap(),
    ///                  "alpine:3".parse().unwrap()],
    ///     allow_derived_images: false,
    /// };
    /// let ryuk = ImageIdentity { reference: "testcontainers/ryuk:0.11.0".parse().unwrap(), digest: None };
    /// let asked: Vec<String> = list.registry_questions(&ryuk).iter().map(ToString::to_string).collect();
    /// assert_eq!(asked, ["docker.io/testcontainers/ryuk:0.11.0"]);
    /// let docker = ImageIdentity { reference: "docker:27".parse().unwrap(), digest: None };
    /// assert_eq!(list.registry_questions(&docker), ["docker:cli".parse::<ImageRef>().unwrap()]);
    /// ```
    pub fn registry_questions(&self, image: &ImageIdentity) -> Vec<ImageRef> {
        let repository = image.reference.repository();
        let mut questions = Vec::new();
        for pattern in &self.images {
            let tag = match pattern {
                ImagePattern::Tag(repo, tag) if repo == repository => tag.as_str(),
                ImagePattern::AnyTag(repo) if repo == repository => match image.reference.tag() {
                    Some(tag) => tag,
                    None => continue,
                },
                _ => continue,
            };
            let question = ImageRef {
                repository: repository.clone(),
                tag: Some(tag.to_string()),
                digest: None,
            };
            if !questions.contains(&question) {
                questions.push(question);
            }
        }
        questions
    }

    /// The tags whose registry digests name the images derived images may be built on (with
    /// `allowDerivedImages`): every `name:tag` entry. A `name:*` entry names no image to look
    /// for, so derived images count only from tag and digest entries.
    pub fn base_questions(&self) -> Vec<ImageRef> {
        let mut questions = Vec::new();
        for pattern in &self.images {
            if let ImagePattern::Tag(repository, tag) = pattern {
                let question = ImageRef {
                    repository: repository.clone(),
                    tag: Some(tag.clone()),
                    digest: None,
                };
                if !questions.contains(&question) {
                    questions.push(question);
                }
            }
        }
        questions
    }

    /// The allowed images a derived image may be built on, each named with its digest (and
    /// tag, if an entry named one): the digest of each `name@digest` entry, and each digest
    /// `known` holds for a `name:tag` entry. The caller finds each in its image store, and one
    /// whose layers begin the image's ([`built_on`]) is the image's base for
    /// [`ImageList::decide`].
    ///
    /// ```
    /// use eci_policy::image::{ImageList, KnownDigests, Digest};
    /// let list = ImageList { images: vec!["docker:cli".parse().unwrap()], allow_derived_images: true };
    /// let digest = Digest::parse(&format!("sha256:{}", "ab".repeat(32))).unwrap();
    /// let mut known = KnownDigests::default();
    /// known.insert(&"docker:cli".parse().unwrap(), digest.clone());
    /// let bases = list.base_candidates(&known);
    /// assert_eq!(bases[0].to_string(), format!("docker.io/library/docker:cli@{digest}"));
    /// ```
    pub fn base_candidates(&self, known: &KnownDigests) -> Vec<ImageRef> {
        let mut candidates = Vec::new();
        for pattern in &self.images {
            let found: Vec<ImageRef> = match pattern {
                ImagePattern::Digest(repository, digest) => vec![ImageRef {
                    repository: repository.clone(),
                    tag: None,
                    digest: Some(digest.clone()),
                }],
                ImagePattern::Tag(repository, tag) => known
                    .digests_of(repository, tag)
                    .map(|digest| ImageRef {
                        repository: repository.clone(),
                        tag: Some(tag.clone()),
                        digest: Some(digest.clone()),
                    })
                    .collect(),
                ImagePattern::Any | ImagePattern::AnyTag(_) => continue,
            };
            for candidate in found {
                if !candidates.contains(&candidate) {
                    candidates.push(candidate);
                }
            }
        }
        candidates
    }

    /// The entry that lets `image` mount the Docker socket, if any. `base` is the image it was
    /// built from, if the caller found one; it counts only with `allowDerivedImages`.
    pub fn decide<'a>(
        &'a self,
        image: &ImageIdentity,
        base: Option<&ImageIdentity>,
        known: &KnownDigests,
    ) -> Option<ImageGrant<'a>> {
        let first_match = |candidate: &ImageIdentity| {
            self.images
                .iter()
                .find(|pattern| pattern.matches(candidate, known))
        };
        if let Some(pattern) = first_match(image) {
            return Some(ImageGrant::Listed(pattern));
        }
        let base = base.filter(|_| self.allow_derived_images)?;
        first_match(base).map(ImageGrant::Derived)
    }
}

#[cfg(test)]
mod tests;
