//! The Dockerfile's invariants: a multi-stage build whose default (last) stage is `FROM
//! scratch` with only the static binary that scripts/build-image.sh stages, so it builds
//! offline and pulls no base image; a `from-source` stage on the same runtime stage; a
//! cached dependency layer; a non-root user; the OCI labels; and a .dockerignore
//! allow-list that lets in what the COPYs need and keeps out `target/` and `.git`.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::PathBuf;

use regex::Regex;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Docker's rules, enough for an allow-list: the last matching pattern wins; `*` matches
/// any characters, `/` included (as fnmatch(3) without FNM_PATHNAME).
fn dockerignore_allows(patterns: &[String], path: &str) -> bool {
    let mut allowed = true;
    for pattern in patterns {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, pattern.as_str()),
        };
        let pattern = pattern.trim_end_matches('/');
        let glob = format!(
            "^{}$",
            regex::escape(pattern)
                .replace(r"\*", ".*")
                .replace(r"\?", ".")
        );
        if Regex::new(&glob).unwrap().is_match(path) || path.starts_with(&format!("{pattern}/")) {
            allowed = negated;
        }
    }
    allowed
}

/// The Dockerfile's instructions: continuation lines joined, comments and blanks dropped.
fn instructions(dockerfile: &str) -> Vec<String> {
    dockerfile
        .replace("\\\n", " ")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

fn starts_with_word(line: &str, word: &str) -> bool {
    line.len() >= word.len() && line[..word.len()].eq_ignore_ascii_case(word)
}

struct Inputs {
    root: PathBuf,
    dockerfile: String,
    dockerignore: String,
    build_image: String,
    cargo: String,
}

impl Inputs {
    fn of_repo() -> Inputs {
        let read = |p: &str| std::fs::read_to_string(repo(p)).unwrap();
        Inputs {
            root: repo(""),
            dockerfile: read("Dockerfile"),
            dockerignore: read(".dockerignore"),
            build_image: read("scripts/build-image.sh"),
            cargo: read("Cargo.toml"),
        }
    }
}

/// Every invariant the inputs break, by name.
fn problems(inputs: &Inputs) -> Vec<String> {
    let Inputs {
        root,
        dockerfile: text,
        dockerignore,
        build_image,
        cargo,
    } = inputs;
    let mut problems = Vec::new();
    let mut check = |name: &str, ok: bool| {
        if !ok {
            problems.push(name.to_owned());
        }
    };
    let lines = instructions(text);
    let patterns: Vec<String> = dockerignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    let froms: Vec<&String> = lines
        .iter()
        .filter(|l| starts_with_word(l, "FROM "))
        .collect();
    check("multi-stage build (builder + runtime)", froms.len() >= 2);
    check(
        "cargo build --release --locked",
        lines
            .iter()
            .any(|l| l.contains("cargo build --release --locked")),
    );

    // A cached dependency layer: the manifests are copied and built before the sources.
    let copies: Vec<&String> = lines
        .iter()
        .filter(|l| starts_with_word(l, "COPY ") && !l.contains("--from"))
        .collect();
    let position = |f: &dyn Fn(&str) -> bool| lines.iter().position(|l| f(l));
    let manifests = position(&|l| l.starts_with("COPY Cargo.toml Cargo.lock"));
    let sources = position(&|l| l.starts_with("COPY src"));
    let first_build = position(&|l| l.contains("cargo build"));
    check(
        "dependency layer: Cargo.toml/Cargo.lock built before src/ is copied",
        matches!((manifests, first_build, sources), (Some(m), Some(b), Some(s)) if m < b && b < s),
    );
    let sources_of = |line: &str| -> Vec<String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        words[1..words.len() - 1]
            .iter()
            .filter(|w| !w.starts_with("--"))
            .map(|w| w.to_string())
            .collect()
    };
    for line in &copies {
        for source in sources_of(line) {
            if source.starts_with("target/") {
                // Not in the tree: scripts/build-image.sh stages it before building.
                check(
                    &format!(
                        "COPY source {source} is staged by scripts/build-image.sh and let in by .dockerignore"
                    ),
                    build_image.contains(&format!("staged={source}"))
                        && dockerignore_allows(&patterns, &source),
                );
            } else {
                check(
                    &format!("COPY source {source} exists and is not excluded by .dockerignore"),
                    root.join(&source).exists()
                        && dockerignore_allows(&patterns, source.trim_end_matches('/')),
                );
            }
        }
    }
    // Every [[bench]]/[[bin]]/[[example]] declared with a path must reach the dependency stage.
    let copied: Vec<String> = copies.iter().flat_map(|l| sources_of(l)).collect();
    for path in Regex::new(r#"(?m)^\s*path\s*=\s*"([^"]+)""#)
        .unwrap()
        .captures_iter(cargo)
    {
        let path = &path[1];
        if path.starts_with("src/") {
            continue; // stubbed in the dependency layer, copied after
        }
        check(
            &format!("Cargo target {path} is copied into the dependency stage"),
            copied
                .iter()
                .any(|s| path.starts_with(&format!("{}/", s.trim_end_matches('/'))) || path == s),
        );
    }
    for bench in Regex::new(r#"(?m)^\[\[bench\]\]\s*\nname\s*=\s*"([^"]+)""#)
        .unwrap()
        .captures_iter(cargo)
    {
        check(
            &format!(
                "bench {} is copied into the dependency stage (benches/)",
                &bench[1]
            ),
            copies.iter().any(|l| l.starts_with("COPY benches")),
        );
    }

    // Stages: the default (last) one must build offline, FROM scratch, with a static binary.
    let stages: Vec<(Option<String>, String)> = froms
        .iter()
        .map(|f| {
            let parts: Vec<&str> = f.split_whitespace().collect();
            let name = (parts.len() >= 4 && parts[2].eq_ignore_ascii_case("AS"))
                .then(|| parts[3].to_owned());
            (name, parts[1].to_owned())
        })
        .collect();
    let names: Vec<&String> = stages.iter().filter_map(|(n, _)| n.as_ref()).collect();
    let root_base = |base: &str| -> String {
        let mut base = base.to_owned();
        let mut seen = Vec::new();
        while let Some((name, parent)) = stages.iter().find(|(n, _)| n.as_deref() == Some(&base)) {
            if seen.contains(name) {
                break;
            }
            seen.push(name.clone());
            base = parent.clone();
        }
        base
    };
    let Some((default_name, default_base)) = stages.last().cloned() else {
        problems.push("no FROM".into());
        return problems;
    };
    let mut check = |name: &str, ok: bool| {
        if !ok {
            problems.push(name.to_owned());
        }
    };
    check(
        "default (last) stage is FROM scratch (directly or through a stage)",
        root_base(&default_base) == "scratch",
    );
    let last_from = lines
        .iter()
        .rposition(|l| starts_with_word(l, "FROM "))
        .unwrap();
    let default_steps: Vec<&String> = lines[last_from..]
        .iter()
        .filter(|l| {
            ["COPY", "ADD", "RUN"]
                .iter()
                .any(|w| starts_with_word(l, w))
        })
        .collect();
    check(
        "default stage copies the binary staged by scripts/build-image.sh, nothing else",
        default_steps == ["COPY target/static/csr-approver /usr/local/bin/csr-approver"],
    );
    let mut needed: Vec<String> = Vec::new();
    let mut todo = vec![default_base.clone()];
    while let Some(base) = todo.pop() {
        if names.contains(&&base) && !needed.contains(&base) {
            todo.extend(
                stages
                    .iter()
                    .filter(|(n, _)| n.as_deref() == Some(&base))
                    .map(|(_, b)| b.clone()),
            );
            needed.push(base);
        }
    }
    let pulled: Vec<&String> = stages
        .iter()
        .filter(|(n, _)| n.as_ref().is_some_and(|n| needed.contains(n)) || *n == default_name)
        .map(|(_, b)| b)
        .filter(|b| *b != "scratch" && !names.contains(b))
        .collect();
    check(
        "the default build pulls no base image (offline)",
        pulled.is_empty(),
    );
    check(
        "static glibc binary: +crt-static in the Dockerfile's builder and in scripts/build-image.sh",
        text.contains("-C target-feature=+crt-static")
            && build_image.contains("-C target-feature=+crt-static")
            && text.contains("--target"),
    );
    let from_source: Vec<&String> = stages
        .iter()
        .filter(|(n, _)| n.as_deref() == Some("from-source"))
        .map(|(_, b)| b)
        .collect();
    check(
        "stage from-source builds on the shared runtime stage",
        from_source.len() == 1
            && root_base(from_source[0]) == "scratch"
            && lines.iter().any(|l| l.starts_with("COPY --from=builder ")),
    );
    let user = Regex::new(r"^USER 65532(:65532)?$").unwrap();
    check("runs as UID 65532", lines.iter().any(|l| user.is_match(l)));
    check(
        r#"ENTRYPOINT ["csr-approver"]"#,
        lines.iter().any(|l| l == r#"ENTRYPOINT ["csr-approver"]"#),
    );
    check(
        r#"CMD ["run"]"#,
        lines.iter().any(|l| l == r#"CMD ["run"]"#),
    );
    for label in ["title", "description", "version", "revision", "licenses"] {
        check(
            &format!("OCI label org.opencontainers.image.{label}"),
            text.contains(&format!("org.opencontainers.image.{label}=")),
        );
    }
    check(
        ".dockerignore excludes target/ (but the staged target/static/csr-approver) and .git",
        [
            "target",
            ".git",
            "target/debug/csr-approver",
            "target/static/x86_64-unknown-linux-gnu/release/csr-approver",
        ]
        .iter()
        .all(|p| !dockerignore_allows(&patterns, p)),
    );
    problems
}

#[test]
fn the_dockerfile_keeps_its_invariants() {
    let problems = problems(&Inputs::of_repo());
    assert!(
        problems.is_empty(),
        "Dockerfile / .dockerignore:\n  {}",
        problems.join("\n  ")
    );
}

/// A broken variant: what it is, how the inputs are edited, the problem it must raise.
type Case = (&'static str, fn(&mut Inputs), &'static str);

#[test]
fn the_dockerfile_checks_can_fail() {
    let cases: [Case; 5] = [
        (
            "a default stage on a distribution",
            |i| {
                i.dockerfile = i.dockerfile.replace(
                    "FROM scratch AS runtime",
                    "FROM docker.io/library/debian AS runtime",
                )
            },
            "the default build pulls no base image (offline)",
        ),
        (
            "root",
            |i| i.dockerfile = i.dockerfile.replace("USER 65532:65532", "USER 0"),
            "runs as UID 65532",
        ),
        (
            "the sources before the dependency layer",
            |i| {
                i.dockerfile = i.dockerfile.replace(
                    "COPY Cargo.toml Cargo.lock ./",
                    "COPY src ./src\nCOPY Cargo.toml Cargo.lock ./",
                )
            },
            "dependency layer: Cargo.toml/Cargo.lock built before src/ is copied",
        ),
        (
            "target/ let into the build context",
            |i| i.dockerignore.push_str("\n!target/\n"),
            ".dockerignore excludes target/ (but the staged target/static/csr-approver) and .git",
        ),
        (
            "an example outside the dependency stage",
            |i| {
                i.cargo
                    .push_str("\n[[example]]\nname = \"x\"\npath = \"examples/x.rs\"\n")
            },
            "Cargo target examples/x.rs is copied into the dependency stage",
        ),
    ];
    for (what, edit, expected) in cases {
        let mut inputs = Inputs::of_repo();
        edit(&mut inputs);
        let problems = problems(&inputs);
        assert!(
            problems.iter().any(|p| p == expected),
            "{what}: expected {expected:?}, got {problems:?}"
        );
    }
}
