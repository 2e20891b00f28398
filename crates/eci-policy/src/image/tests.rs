use super::*;
use proptest::prelude::*;

fn digest(fill: char) -> Digest {
    Digest::parse(&format!("sha256:{}", fill.to_string().repeat(64))).unwrap()
}

fn reference(text: &str) -> ImageRef {
    text.parse().unwrap()
}

fn identity(text: &str, digest: Option<Digest>) -> ImageIdentity {
    ImageIdentity {
        reference: reference(text),
        digest,
    }
}

#[test]
fn names_normalise_like_docker() {
    let cases = [
        ("ubuntu", "docker.io/library/ubuntu:latest"),
        ("ubuntu:22.04", "docker.io/library/ubuntu:22.04"),
        ("user/app", "docker.io/user/app:latest"),
        ("docker.io/ubuntu", "docker.io/library/ubuntu:latest"),
        ("index.docker.io/user/app:v1", "docker.io/user/app:v1"),
        ("localhost/app", "localhost/app:latest"),
        ("localhost:5000/app:1", "localhost:5000/app:1"),
        ("ghcr.io/org/team/app", "ghcr.io/org/team/app:latest"),
        ("Registry/app", "Registry/app:latest"),
        ("[::1]:5000/app", "[::1]:5000/app:latest"),
        ("localhost:5000", "docker.io/library/localhost:5000"),
        ("a__b-c---d/e.f", "docker.io/a__b-c---d/e.f:latest"),
        ("a.b/c", "a.b/c:latest"),
    ];
    for (typed, canonical) in cases {
        assert_eq!(reference(typed).to_string(), canonical, "{typed}");
    }
    let pinned = format!("ubuntu@sha256:{}", "a".repeat(64));
    let parsed = reference(&pinned);
    assert_eq!(parsed.tag(), None, "a digest without a tag means no tag");
    assert_eq!(parsed.digest(), Some(&digest('a')));
}

#[test]
fn malformed_references_name_the_bad_part() {
    let cases: [(&str, ImageError); 10] = [
        ("", ImageError::Empty),
        ("Ubuntu", ImageError::Uppercase("Ubuntu".into())),
        ("ubuntu:", ImageError::Tag(String::new())),
        ("ubuntu:-x", ImageError::Tag("-x".into())),
        ("ubuntu@sha256:12", ImageError::Digest("sha256:12".into())),
        ("a..b/c", ImageError::Registry("a..b".into())),
        ("foo/-bar", ImageError::PathComponent("-bar".into())),
        ("foo//bar", ImageError::PathComponent(String::new())),
        ("ubu*tu", ImageError::Wildcard("ubu*tu".into())),
        ("host:port/app", ImageError::Registry("host:port".into())),
    ];
    for (text, expected) in cases {
        assert_eq!(ImageRef::parse(text), Err(expected), "{text}");
    }
    let hex = "f".repeat(64);
    assert_eq!(ImageRef::parse(&hex), Err(ImageError::HexName(hex.clone())));
    let long = format!("{}/app", "a".repeat(250));
    assert!(matches!(
        ImageRef::parse(&long),
        Err(ImageError::TooLong(_))
    ));
    assert!(ImageRef::parse(&format!("app:{}", "t".repeat(129))).is_err());
}

#[test]
fn patterns_cover_every_form() {
    let ryuk = ImagePattern::parse("docker.io/testcontainers/ryuk:*").unwrap();
    assert!(matches!(ryuk, ImagePattern::AnyTag(_)));
    let cli = ImagePattern::parse("docker:cli").unwrap();
    assert_eq!(cli.to_string(), "docker.io/library/docker:cli");
    let plain = ImagePattern::parse("docker").unwrap();
    assert_eq!(plain.to_string(), "docker.io/library/docker:latest");
    let pinned = ImagePattern::parse(&format!("docker@{}", digest('b'))).unwrap();
    assert!(matches!(pinned, ImagePattern::Digest(..)));
    assert_eq!(
        ImagePattern::parse("docker:c*"),
        Err(ImageError::Wildcard("docker:c*".into()))
    );
    assert_eq!(
        ImagePattern::parse("*/app:*"),
        Err(ImageError::Wildcard("*/app:*".into()))
    );
}

#[test]
fn a_retagged_image_does_not_pass() {
    let list = ImageList {
        images: vec![ImagePattern::parse("docker:cli").unwrap()],
        allow_derived_images: false,
    };
    let mut known = KnownDigests::default();
    known.insert(&reference("docker:cli"), digest('a'));
    let genuine = identity("docker:cli", Some(digest('a')));
    assert!(list.decide(&genuine, None, &known).is_some());
    let retagged = identity("docker:cli", Some(digest('e')));
    assert_eq!(list.decide(&retagged, None, &known), None);
    let unknown_digest = identity("docker:cli", None);
    assert_eq!(list.decide(&unknown_digest, None, &known), None);
    let same_content_other_name = identity("evil/cli:latest", Some(digest('a')));
    assert_eq!(list.decide(&same_content_other_name, None, &known), None);
}

#[test]
fn any_tag_and_digest_entries_match_by_digest() {
    let mut known = KnownDigests::default();
    known.insert(&reference("testcontainers/ryuk:0.5"), digest('1'));
    known.insert(&reference("testcontainers/ryuk:0.6"), digest('2'));
    known.insert(&reference("testcontainers/ryuk2:0.6"), digest('3'));
    let any_tag = ImagePattern::parse("testcontainers/ryuk:*").unwrap();
    assert!(any_tag.matches(
        &identity("testcontainers/ryuk:0.6", Some(digest('2'))),
        &known
    ));
    assert!(any_tag.matches(&identity("testcontainers/ryuk", Some(digest('1'))), &known));
    assert!(!any_tag.matches(
        &identity("testcontainers/ryuk:0.6", Some(digest('3'))),
        &known
    ));

    let pinned = ImagePattern::parse(&format!("docker@{}", digest('c'))).unwrap();
    assert!(pinned.matches(&identity("docker:anything", Some(digest('c'))), &known));
    assert!(!pinned.matches(&identity("docker:anything", Some(digest('d'))), &known));
    let lying = identity(&format!("docker@{}", digest('c')), Some(digest('d')));
    assert!(
        !pinned.matches(&lying, &known),
        "a reference naming another digest"
    );
    assert!(ImagePattern::Any.matches(&identity("local-build", None), &known));
}

#[test]
fn the_registry_is_asked_only_about_tags_that_decide() {
    let list = ImageList {
        images: [
            "docker:cli",
            "docker:cli",
            "testcontainers/ryuk:*",
            "alpine:3",
            "*",
        ]
        .iter()
        .map(|text| text.parse().unwrap())
        .collect(),
        allow_derived_images: false,
    };
    let asked = |image: &str| list.registry_questions(&identity(image, None));
    assert_eq!(asked("docker:27"), [reference("docker:cli")]);
    assert_eq!(
        asked("testcontainers/ryuk"),
        [reference("testcontainers/ryuk:latest")]
    );
    assert!(asked(&format!("testcontainers/ryuk@{}", digest('1'))).is_empty());
    assert!(asked("evil/docker:cli").is_empty());
    // What the registry then says decides, not the local tag.
    let mut known = KnownDigests::default();
    known.insert(&reference("testcontainers/ryuk:0.6"), digest('2'));
    let pulled = identity("testcontainers/ryuk:0.6", Some(digest('2')));
    assert!(list.decide(&pulled, None, &known).is_some());
    let built_here = identity("testcontainers/ryuk:0.6", Some(digest('9')));
    assert_eq!(
        ImageList {
            images: vec!["testcontainers/ryuk:*".parse().unwrap()],
            allow_derived_images: false
        }
        .decide(&built_here, None, &known),
        None
    );
}

#[test]
fn bases_are_the_images_tag_and_digest_entries_name() {
    let list = ImageList {
        images: [
            "docker:cli".to_string(),
            "testcontainers/ryuk:*".to_string(),
            format!("alpine@{}", digest('f')),
            "*".to_string(),
        ]
        .iter()
        .map(|text| text.parse().unwrap())
        .collect(),
        allow_derived_images: true,
    };
    assert_eq!(list.base_questions(), [reference("docker:cli")]);
    let mut known = KnownDigests::default();
    let mut more = KnownDigests::default();
    known.insert(&reference("docker:cli"), digest('a'));
    more.insert(&reference("docker:cli"), digest('b'));
    more.insert(&reference("testcontainers/ryuk:1"), digest('c'));
    known.extend(more);
    let bases: Vec<String> = list
        .base_candidates(&known)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        bases,
        [
            format!("docker.io/library/docker:cli@{}", digest('a')),
            format!("docker.io/library/docker:cli@{}", digest('b')),
            format!("docker.io/library/alpine@{}", digest('f')),
        ]
    );
    // A base found so matches its entry through ImageList::decide.
    let base = identity(&bases[1], Some(digest('b')));
    let derived = identity("my/app:1", None);
    assert!(matches!(
        list.decide(&derived, Some(&base), &known),
        Some(ImageGrant::Listed(ImagePattern::Any))
    ));
    let strict = ImageList {
        images: vec!["docker:cli".parse().unwrap()],
        allow_derived_images: true,
    };
    assert!(matches!(
        strict.decide(&derived, Some(&base), &known),
        Some(ImageGrant::Derived(_))
    ));
}

#[test]
fn derived_images_count_only_when_allowed() {
    let mut known = KnownDigests::default();
    known.insert(&reference("paketobuildpacks/builder:base"), digest('9'));
    let base = identity("paketobuildpacks/builder:base", Some(digest('9')));
    let built = identity("my-local-app", None);
    let mut list = ImageList {
        images: vec![ImagePattern::parse("paketobuildpacks/builder:base").unwrap()],
        allow_derived_images: true,
    };
    assert!(matches!(
        list.decide(&built, Some(&base), &known),
        Some(ImageGrant::Derived(_))
    ));
    list.allow_derived_images = false;
    assert_eq!(list.decide(&built, Some(&base), &known), None);
}

fn component() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,4}((\\.|_|__|-{1,2})[a-z0-9]{1,4}){0,2}"
}

fn any_reference() -> impl Strategy<Value = (Option<String>, Vec<String>, Option<String>, bool)> {
    let registry = prop_oneof![
        Just(None),
        Just(Some("localhost".to_string())),
        "[a-z]{1,6}\\.[a-z]{2,3}(:[0-9]{1,5})?".prop_map(Some),
    ];
    (
        registry,
        proptest::collection::vec(component(), 1..4),
        proptest::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,10}"),
        any::<bool>(),
    )
}

proptest! {
    #[test]
    fn parsing_round_trips_through_the_canonical_form((registry, mut path, tag, pinned) in any_reference()) {
        if registry.is_none() {
            // Docker reads a first component with a '.' as a registry host.
            path[0] = path[0].replace('.', "-");
        }
        let mut text = path.join("/");
        if let Some(registry) = &registry {
            text = format!("{registry}/{text}");
        }
        if let Some(tag) = &tag {
            text = format!("{text}:{tag}");
        }
        if pinned {
            text = format!("{text}@sha256:{}", "0".repeat(64));
        }
        let parsed = ImageRef::parse(&text).unwrap();
        prop_assert_eq!(parsed.tag(), tag.as_deref().or((!pinned).then_some(DEFAULT_TAG)));
        let canonical = parsed.to_string();
        prop_assert_eq!(ImageRef::parse(&canonical).unwrap(), parsed.clone());
        prop_assert_eq!(ImageRef::parse(&canonical).unwrap().to_string(), canonical);
    }

    #[test]
    fn parsing_never_panics_and_reparses_what_it_accepts(text in "\\PC{0,40}") {
        if let Ok(parsed) = ImageRef::parse(&text) {
            prop_assert_eq!(ImageRef::parse(&parsed.to_string()).unwrap(), parsed);
        }
        if let Ok(pattern) = ImagePattern::parse(&text) {
            prop_assert_eq!(ImagePattern::parse(&pattern.to_string()).unwrap(), pattern);
        }
    }

    #[test]
    fn every_question_is_a_tag_of_the_images_repository(
        entries in proptest::collection::vec("[a-c]{1,2}(:[a-c*]{1,2})?", 0..6),
        image in "[a-c]{1,2}:[a-c]{1,2}",
    ) {
        let images = entries.iter().filter_map(|e| e.parse().ok()).collect();
        let list = ImageList { images, allow_derived_images: false };
        let image = identity(&image, None);
        for question in list.registry_questions(&image) {
            prop_assert_eq!(question.repository(), image.reference.repository());
            prop_assert!(question.tag().is_some() && question.digest().is_none());
        }
    }

    #[test]
    fn an_image_is_built_on_any_non_empty_beginning_of_its_layers(
        layers in proptest::collection::vec("[a-c]", 0..6), cut in 0..7usize, other in "[a-c]"
    ) {
        let base = layers[..cut.min(layers.len())].to_vec();
        prop_assert_eq!(built_on(&layers, &base), !base.is_empty());
        if let Some(last) = base.len().checked_sub(1) {
            let mut changed = base.clone();
            changed[last] = format!("{}x", other);
            prop_assert!(!built_on(&layers, &changed));
        }
    }

    #[test]
    fn reference_like_noise_never_panics(text in "[a-zA-Z0-9:/@._*\\[\\]-]{0,40}") {
        let _ = ImageRef::parse(&text);
        let _ = ImagePattern::parse(&text);
    }
}
