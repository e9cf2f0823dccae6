//! Compiling raw definitions into a [`Domain`]: names, versions, ownership of namespaces and
//! repos, the one core bundle, figment includes (and their cycles), kinds and their parents,
//! policies, triggers, and the composed, compiled schema of every reference type and kind.
//!
//! Every check runs even when an earlier one failed; a piece that cannot be checked because
//! something it depends on is broken is skipped silently, so each fault is reported once.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;

use serde_json::{Map, Value};

use super::error::{DefinitionError, DefinitionErrorKind as K, Location};
use super::load::{
    Loaded, Located, RawBundle, RawFigment, RawKind, RawPolicy, RawRefType, RawTrigger,
};
use super::names;
use super::registry::{
    Action, Bundle, ContractUse, DeclaredTrigger, Domain, Figment, Kind, Policy, RefEvent, RefType,
    Role, Trigger, TriggerSource,
};
use super::schema::{self, Part};

/// Compile what was loaded. Returns a domain only when `errors` is (and stays) empty.
pub(crate) fn compile(loaded: Loaded, errors: &mut Vec<DefinitionError>) -> Option<Domain> {
    let Loaded {
        bundles: raw_bundles,
        figments: standalone,
        unreadable_bundles,
    } = loaded;

    let bundles = check_bundles(&raw_bundles, unreadable_bundles > 0, errors);
    let figments = FigmentTable::build(&raw_bundles, standalone, errors);

    let mut ref_types = BTreeMap::new();
    let mut repo_owner: HashMap<String, (usize, Location)> = HashMap::new();
    for (bi, raw) in raw_bundles.iter().enumerate() {
        let Some(info) = &bundles[bi] else { continue };
        for r in &raw.refs {
            if let Some(rt) = compile_ref(
                info,
                raw,
                r,
                &figments,
                &mut repo_owner,
                bi,
                &raw_bundles,
                errors,
            ) {
                ref_types.insert(rt.repo.clone(), rt);
            }
        }
    }

    if !errors.is_empty() {
        return None;
    }

    // Sort bundles: core first, then plugins by name; re-index namespace ownership.
    let mut out: Vec<Bundle> = Vec::new();
    for (bi, info) in bundles.into_iter().enumerate() {
        let info = info?;
        let raw = &raw_bundles[bi];
        let mut repos: Vec<String> = ref_types
            .values()
            .filter(|r: &&RefType| r.bundle == info.name)
            .map(|r| r.repo.clone())
            .collect();
        repos.sort();
        let mut used = BTreeSet::new();
        for r in ref_types.values().filter(|r| r.bundle == info.name) {
            let mut starts: Vec<usize> = Vec::new();
            for f in &r.figments {
                starts.extend(figments.lookup(f, Some(&info.name)));
            }
            for k in r.kinds.values() {
                for f in &k.figments {
                    starts.extend(figments.lookup(f, Some(&info.name)));
                }
            }
            for i in figments.closure(&starts) {
                used.insert(figments.nodes[i].name.value.clone());
            }
        }
        out.push(Bundle {
            name: info.name.clone(),
            version: info.version.clone(),
            role: info.role,
            description: info.description.clone(),
            namespaces: info.namespaces.iter().cloned().collect(),
            resolves: info.resolves.iter().cloned().collect(),
            repos,
            contracts: info.contracts.iter().cloned().collect(),
            figments: used.into_iter().collect(),
            dir: raw.dir.clone(),
            file: raw.file.clone(),
        });
    }
    out.sort_by(|a, b| (a.role, &a.name).cmp(&(b.role, &b.name)));
    let mut namespaces = BTreeMap::new();
    for (i, b) in out.iter().enumerate() {
        for ns in &b.namespaces {
            namespaces.insert(ns.clone(), i);
        }
    }

    let figment_map = figments.into_registry();
    let mut domain = Domain {
        bundles: out,
        ref_types,
        namespaces,
        figments: figment_map,
        operations: Vec::new(),
        op_index: HashMap::new(),
    };
    domain.operations = super::ops::generate(&domain);
    domain.op_index = domain
        .operations
        .iter()
        .enumerate()
        .map(|(i, op)| (op.name.clone(), i))
        .collect();
    Some(domain)
}

/// What `[bundle]` says, once checked.
struct BundleInfo {
    name: String,
    version: String,
    role: Role,
    description: String,
    namespaces: BTreeSet<String>,
    resolves: BTreeSet<String>,
    contracts: BTreeSet<ContractUse>,
}

/// Check each `[bundle]`, one core, unique bundle names and namespace ownership. The result
/// has one entry per raw bundle: `None` where its header is unusable.
fn check_bundles(
    raw: &[RawBundle],
    some_unreadable: bool,
    errors: &mut Vec<DefinitionError>,
) -> Vec<Option<BundleInfo>> {
    let mut infos = Vec::with_capacity(raw.len());
    let mut names_seen: HashMap<String, PathBuf> = HashMap::new();
    let mut ns_owner: HashMap<String, (String, PathBuf, Location)> = HashMap::new();
    let mut cores: Vec<(String, PathBuf, Location)> = Vec::new();
    let mut plugins = Vec::new();
    // A bundle whose role cannot be read might be the core: then "no core" is not reported.
    let mut role_unknown = some_unreadable;
    for b in raw {
        let Some(h) = &b.header else {
            role_unknown = true;
            infos.push(None);
            continue;
        };
        // A duplicate bundle is skipped (its repos would all be duplicates too); a bad
        // name, version or role is reported and the bundle's contents are still checked.
        let mut ok = true;
        if !names::is_package_name(&h.name.value) {
            errors.push(bad_name(&h.name, "bundle", names::PACKAGE_RULE));
        }
        if let Some(first) = names_seen.get(&h.name.value) {
            errors.push(
                DefinitionError::at(
                    h.name.loc.clone(),
                    K::DuplicateBundle {
                        name: h.name.value.clone(),
                        first_file: first.clone(),
                        second_file: b.file.clone(),
                    },
                )
                .also(Location::file_start(first)),
            );
            ok = false;
        } else {
            names_seen.insert(h.name.value.clone(), b.file.clone());
        }
        if let Err(reason) = names::check_semver(&h.version.value) {
            errors.push(DefinitionError::at(
                h.version.loc.clone(),
                K::BadVersion {
                    version: h.version.value.clone(),
                    reason,
                },
            ));
        }
        let role = match h.role.value.as_str() {
            "core" => Some(Role::Core),
            "plugin" => Some(Role::Plugin),
            other => {
                errors.push(DefinitionError::at(
                    h.role.loc.clone(),
                    K::InvalidValue {
                        section: "[bundle]".into(),
                        message: format!("role must be \"core\" or \"plugin\", not \"{other}\""),
                    },
                ));
                role_unknown = true;
                None
            }
        };
        match role {
            Some(Role::Core) => {
                if let Some((first, first_file, first_loc)) = cores.first() {
                    errors.push(
                        DefinitionError::at(
                            h.role.loc.clone(),
                            K::TwoCores {
                                first: first.clone(),
                                first_file: first_file.clone(),
                                second: h.name.value.clone(),
                                second_file: b.file.clone(),
                            },
                        )
                        .also(first_loc.clone()),
                    );
                }
                cores.push((h.name.value.clone(), b.file.clone(), h.role.loc.clone()));
            }
            Some(Role::Plugin) => plugins.push(h.name.value.clone()),
            None => {}
        }
        // An unknown role is reported above; the contents are checked as a plugin's.
        let role = role.unwrap_or(Role::Plugin);
        let mut namespaces = BTreeSet::new();
        for ns in &h.namespaces {
            if !names::is_ident(&ns.value) {
                errors.push(bad_name(ns, "namespace", names::IDENT_RULE));
                continue;
            }
            if let Some((first, first_file, first_loc)) = ns_owner.get(&ns.value) {
                errors.push(
                    DefinitionError::at(
                        ns.loc.clone(),
                        K::DuplicateNamespace {
                            namespace: ns.value.clone(),
                            first: first.clone(),
                            first_file: first_file.clone(),
                            second: h.name.value.clone(),
                            second_file: b.file.clone(),
                        },
                    )
                    .also(first_loc.clone()),
                );
                continue;
            }
            ns_owner.insert(
                ns.value.clone(),
                (h.name.value.clone(), b.file.clone(), ns.loc.clone()),
            );
            namespaces.insert(ns.value.clone());
        }
        let mut resolves = BTreeSet::new();
        for ns in &h.resolves {
            if !names::is_ident(&ns.value) {
                errors.push(bad_name(ns, "namespace", names::IDENT_RULE));
            } else if h.namespaces.iter().any(|own| own.value == ns.value) {
                errors.push(DefinitionError::at(
                    ns.loc.clone(),
                    K::InvalidValue {
                        section: "[bundle]".into(),
                        message: format!(
                            "`resolves` lists namespaces owned elsewhere, and `{}` is this \
                             bundle's own",
                            ns.value
                        ),
                    },
                ));
            } else {
                resolves.insert(ns.value.clone());
            }
        }
        let mut contracts = BTreeSet::new();
        for c in &h.contracts {
            match names::parse_contract(&c.value) {
                Ok((name, version)) => {
                    contracts.insert(ContractUse {
                        name: name.to_owned(),
                        version: version.to_owned(),
                    });
                }
                Err(reason) => errors.push(DefinitionError::at(
                    c.loc.clone(),
                    K::BadContract {
                        value: c.value.clone(),
                        reason,
                    },
                )),
            }
        }
        infos.push(ok.then(|| BundleInfo {
            name: h.name.value.clone(),
            version: h.version.value.clone(),
            role,
            description: h.description.clone().unwrap_or_default(),
            namespaces,
            resolves,
            contracts,
        }));
    }
    if cores.is_empty() && !role_unknown {
        plugins.sort();
        errors.push(DefinitionError::global(K::NoCore { plugins }));
    }
    infos
}

fn bad_name(name: &Located<String>, what: &'static str, rule: &'static str) -> DefinitionError {
    DefinitionError::at(
        name.loc.clone(),
        K::BadName {
            what,
            name: name.value.clone(),
            rule,
        },
    )
}

/// Every figment, standalone and inline, with includes resolved.
struct FigmentTable {
    nodes: Vec<FigmentNode>,
    standalone: HashMap<String, usize>,
    inline: HashMap<(String, String), usize>,
}

struct FigmentNode {
    name: Located<String>,
    raw: RawFigment,
    /// The bundle an inline figment belongs to.
    bundle: Option<String>,
    /// Resolved includes.
    edges: Vec<usize>,
    /// Checked triggers.
    triggers: Vec<DeclaredTrigger>,
}

impl FigmentTable {
    fn build(
        raw_bundles: &[RawBundle],
        standalone: Vec<RawFigment>,
        errors: &mut Vec<DefinitionError>,
    ) -> Self {
        let mut table = Self {
            nodes: Vec::new(),
            standalone: HashMap::new(),
            inline: HashMap::new(),
        };
        let mut by_name: HashMap<String, (PathBuf, Location)> = HashMap::new();
        let mut add = |table: &mut Self, raw: RawFigment, bundle: Option<String>| {
            if !names::is_package_name(&raw.name.value) {
                errors.push(bad_name(&raw.name, "figment", names::PACKAGE_RULE));
                return;
            }
            match (&bundle, &raw.version) {
                (None, None) => errors.push(DefinitionError::at(
                    raw.name.loc.clone(),
                    K::InvalidValue {
                        section: "[figment]".into(),
                        message: "missing field `version`".into(),
                    },
                )),
                (Some(_), Some(v)) => errors.push(DefinitionError::at(
                    v.loc.clone(),
                    K::InvalidValue {
                        section: format!("[figments.{}]", raw.name.value),
                        message: "an inline figment has its bundle's version; remove `version`"
                            .into(),
                    },
                )),
                (None, Some(v)) => {
                    if let Err(reason) = names::check_semver(&v.value) {
                        errors.push(DefinitionError::at(
                            v.loc.clone(),
                            K::BadVersion {
                                version: v.value.clone(),
                                reason,
                            },
                        ));
                    }
                }
                (Some(_), None) => {}
            }
            if let Some((first_file, first_loc)) = by_name.get(&raw.name.value) {
                errors.push(
                    DefinitionError::at(
                        raw.name.loc.clone(),
                        K::DuplicateFigment {
                            name: raw.name.value.clone(),
                            first_file: first_file.clone(),
                            second_file: raw.file.clone(),
                        },
                    )
                    .also(first_loc.clone()),
                );
                return;
            }
            by_name.insert(
                raw.name.value.clone(),
                (raw.file.clone(), raw.name.loc.clone()),
            );
            let triggers = check_triggers(&raw.triggers, errors);
            let idx = table.nodes.len();
            match &bundle {
                None => table.standalone.insert(raw.name.value.clone(), idx),
                Some(b) => table
                    .inline
                    .insert((b.clone(), raw.name.value.clone()), idx),
            };
            table.nodes.push(FigmentNode {
                name: raw.name.clone(),
                raw,
                bundle,
                edges: Vec::new(),
                triggers,
            });
        };
        for f in standalone {
            add(&mut table, f, None);
        }
        for b in raw_bundles {
            let Some(h) = &b.header else { continue };
            for f in &b.figments {
                add(&mut table, f.clone(), Some(h.name.value.clone()));
            }
        }
        for i in 0..table.nodes.len() {
            let bundle = table.nodes[i].bundle.clone();
            let includes = table.nodes[i].raw.figments.clone();
            let mut edges = Vec::new();
            for inc in &includes {
                match table.resolve(&inc.value, bundle.as_deref()) {
                    Ok(j) => edges.push(j),
                    Err(kind) => errors.push(DefinitionError::at(inc.loc.clone(), kind)),
                }
            }
            table.nodes[i].edges = edges;
        }
        table.report_cycles(errors);
        table
    }

    /// The figment `name` as seen from `bundle` (its inline figments, then standalone ones).
    fn resolve(&self, name: &str, bundle: Option<&str>) -> Result<usize, K> {
        if let Some(b) = bundle
            && let Some(&i) = self.inline.get(&(b.to_owned(), name.to_owned()))
        {
            return Ok(i);
        }
        if let Some(&i) = self.standalone.get(name) {
            return Ok(i);
        }
        if let Some(((owner, _), _)) = self.inline.iter().find(|((_, n), _)| n == name) {
            return Err(K::PrivateFigment {
                name: name.to_owned(),
                bundle: owner.clone(),
            });
        }
        let mut known: Vec<String> = self.standalone.keys().cloned().collect();
        if let Some(b) = bundle {
            known.extend(
                self.inline
                    .keys()
                    .filter(|(ib, _)| ib == b)
                    .map(|(_, n)| n.clone()),
            );
        }
        known.sort();
        Err(K::MissingFigment {
            name: name.to_owned(),
            known,
        })
    }

    /// Like `resolve`, without the error.
    fn lookup(&self, name: &str, bundle: Option<&str>) -> Option<usize> {
        self.resolve(name, bundle).ok()
    }

    /// Report each include cycle once, at the include that closes it.
    fn report_cycles(&self, errors: &mut Vec<DefinitionError>) {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            Active,
            Done,
        }
        let mut marks = vec![Mark::New; self.nodes.len()];
        let mut reported: HashSet<Vec<usize>> = HashSet::new();
        for start in 0..self.nodes.len() {
            if marks[start] != Mark::New {
                continue;
            }
            // Iterative DFS: (node, next edge index); `path` mirrors the stack.
            let mut stack = vec![(start, 0usize)];
            marks[start] = Mark::Active;
            while let Some(top) = stack.last_mut() {
                let (node, edge) = *top;
                if let Some(&to) = self.nodes[node].edges.get(edge) {
                    top.1 += 1;
                    match marks[to] {
                        Mark::New => {
                            marks[to] = Mark::Active;
                            stack.push((to, 0));
                        }
                        Mark::Active => {
                            let from = stack.iter().position(|(n, _)| *n == to).unwrap_or(0);
                            let members: Vec<usize> =
                                stack[from..].iter().map(|(n, _)| *n).collect();
                            let mut key = members.clone();
                            key.sort_unstable();
                            if reported.insert(key) {
                                let mut cycle: Vec<String> = members
                                    .iter()
                                    .map(|&n| self.nodes[n].name.value.clone())
                                    .collect();
                                cycle.push(self.nodes[to].name.value.clone());
                                let at = self.include_loc(node, edge);
                                errors.push(DefinitionError::at(at, K::FigmentCycle { cycle }));
                            }
                        }
                        Mark::Done => {}
                    }
                } else {
                    marks[node] = Mark::Done;
                    stack.pop();
                }
            }
        }
    }

    /// Where figment `node` writes its `edge`-th resolved include.
    fn include_loc(&self, node: usize, edge: usize) -> Location {
        let n = &self.nodes[node];
        let target = &self.nodes[n.edges[edge]].name.value;
        n.raw
            .figments
            .iter()
            .find(|inc| &inc.value == target)
            .map_or_else(|| n.name.loc.clone(), |inc| inc.loc.clone())
    }

    /// The figments reachable from `starts`, each once: includes before includers, in
    /// depth-first order (cycles are already reported and simply not followed twice).
    fn closure(&self, starts: &[usize]) -> Vec<usize> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for &s in starts {
            self.visit(s, &mut seen, &mut out);
        }
        out
    }

    fn visit(&self, node: usize, seen: &mut HashSet<usize>, out: &mut Vec<usize>) {
        if !seen.insert(node) {
            return;
        }
        for &e in &self.nodes[node].edges {
            self.visit(e, seen, out);
        }
        out.push(node);
    }

    /// The `$id` a figment fragment gets in a composition.
    fn schema_id(&self, node: usize) -> String {
        let n = &self.nodes[node];
        match &n.bundle {
            None => format!("urn:bver:figment:{}", n.name.value),
            Some(b) => format!("urn:bver:{b}:figment:{}", n.name.value),
        }
    }

    fn into_registry(self) -> BTreeMap<String, Figment> {
        let names: Vec<String> = self.nodes.iter().map(|n| n.name.value.clone()).collect();
        self.nodes
            .into_iter()
            .map(|n| {
                let fig = Figment {
                    name: n.name.value.clone(),
                    version: n.raw.version.map(|v| v.value),
                    description: n.raw.description.unwrap_or_default(),
                    schema: n.raw.schema.map(|s| s.value),
                    includes: n.edges.iter().map(|&e| names[e].clone()).collect(),
                    triggers: n.triggers,
                    bundle: n.bundle,
                    file: n.raw.file,
                };
                (fig.name.clone(), fig)
            })
            .collect()
    }
}

/// Check declared triggers: names, events, no duplicates, no built-in names.
fn check_triggers(raw: &[RawTrigger], errors: &mut Vec<DefinitionError>) -> Vec<DeclaredTrigger> {
    let mut out = Vec::new();
    for t in raw {
        if !names::is_ident(&t.name.value) {
            errors.push(bad_name(&t.name, "trigger", names::IDENT_RULE));
            continue;
        }
        if RefEvent::parse(&t.name.value).is_some() {
            errors.push(DefinitionError::at(
                t.name.loc.clone(),
                K::DuplicateTrigger {
                    name: t.name.value.clone(),
                },
            ));
            continue;
        }
        let mut on = Vec::new();
        for e in &t.on {
            match RefEvent::parse(&e.value) {
                Some(ev) if !on.contains(&ev) => on.push(ev),
                Some(_) => {}
                None => errors.push(DefinitionError::at(
                    e.loc.clone(),
                    K::UnknownEvent {
                        trigger: t.name.value.clone(),
                        event: e.value.clone(),
                    },
                )),
            }
        }
        if t.on.is_empty() {
            errors.push(DefinitionError::at(
                t.name.loc.clone(),
                K::InvalidValue {
                    section: format!("trigger `{}`", t.name.value),
                    message: "`on` lists no events".into(),
                },
            ));
        }
        on.sort();
        out.push(DeclaredTrigger {
            name: t.name.value.clone(),
            description: t.description.clone().unwrap_or_default(),
            on,
        });
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn compile_ref(
    info: &BundleInfo,
    raw_bundle: &RawBundle,
    r: &RawRefType,
    figments: &FigmentTable,
    repo_owner: &mut HashMap<String, (usize, Location)>,
    bundle_index: usize,
    raw_bundles: &[RawBundle],
    errors: &mut Vec<DefinitionError>,
) -> Option<RefType> {
    let before = errors.len();
    let repo = &r.repo.value;
    if !names::is_ident(repo) {
        errors.push(bad_name(&r.repo, "repo", names::IDENT_RULE));
        return None;
    }
    if let Some((first, first_loc)) = repo_owner.get(repo) {
        let first_bundle = &raw_bundles[*first];
        let first_name = first_bundle
            .header
            .as_ref()
            .map(|h| h.name.value.clone())
            .unwrap_or_default();
        errors.push(
            DefinitionError::at(
                r.repo.loc.clone(),
                K::DuplicateRepo {
                    repo: repo.clone(),
                    first: first_name,
                    first_file: first_bundle.file.clone(),
                    second: info.name.clone(),
                    second_file: raw_bundle.file.clone(),
                },
            )
            .also(first_loc.clone()),
        );
        return None;
    }
    repo_owner.insert(repo.clone(), (bundle_index, r.repo.loc.clone()));

    let owned: Vec<String> = info.namespaces.iter().cloned().collect();
    let namespace = match &r.namespace {
        Some(ns) if !names::is_ident(&ns.value) => {
            errors.push(bad_name(ns, "namespace", names::IDENT_RULE));
            None
        }
        Some(ns) if !info.namespaces.contains(&ns.value) => {
            errors.push(DefinitionError::at(
                ns.loc.clone(),
                K::ForeignNamespace {
                    repo: repo.clone(),
                    namespace: ns.value.clone(),
                    bundle: info.name.clone(),
                    owned: owned.clone(),
                },
            ));
            None
        }
        Some(ns) => Some(ns.value.clone()),
        None if owned.len() == 1 => owned.first().cloned(),
        None => {
            errors.push(DefinitionError::at(
                r.repo.loc.clone(),
                K::MissingNamespace {
                    repo: repo.clone(),
                    owned: owned.clone(),
                },
            ));
            None
        }
    };

    let policy = check_policy(repo, &r.policy, errors);
    let bundle = Some(info.name.as_str());
    let resolve_all = |list: &[Located<String>], errors: &mut Vec<DefinitionError>| {
        let mut out = Vec::new();
        for f in list {
            match figments.resolve(&f.value, bundle) {
                Ok(i) => out.push(i),
                Err(kind) => errors.push(DefinitionError::at(f.loc.clone(), kind)),
            }
        }
        out
    };
    let ref_figs = resolve_all(&r.figments, errors);

    // Kinds: names, parents, cycles.
    let mut kind_defs: BTreeMap<String, (&RawKind, Vec<usize>)> = BTreeMap::new();
    for k in &r.kinds {
        if !names::is_kind(&k.name.value) {
            errors.push(bad_name(&k.name, "kind", names::KIND_RULE));
            continue;
        }
        let figs = resolve_all(&k.figments, errors);
        kind_defs.insert(k.name.value.clone(), (k, figs));
    }
    let known: Vec<String> = kind_defs.keys().cloned().collect();
    for (k, _) in kind_defs.values() {
        if let Some(p) = &k.parent
            && !kind_defs.contains_key(&p.value)
        {
            errors.push(DefinitionError::at(
                p.loc.clone(),
                K::UnknownParentKind {
                    repo: repo.clone(),
                    kind: k.name.value.clone(),
                    parent: p.value.clone(),
                    known: known.clone(),
                },
            ));
        }
    }
    let mut lineages: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut cycles_seen: HashSet<Vec<String>> = HashSet::new();
    for name in kind_defs.keys() {
        let mut chain = vec![name.clone()];
        let mut cur = name.clone();
        let mut broken = false;
        while let Some(p) = kind_defs.get(&cur).and_then(|(k, _)| k.parent.as_ref()) {
            if !kind_defs.contains_key(&p.value) {
                broken = true;
                break;
            }
            if let Some(pos) = chain.iter().position(|c| c == &p.value) {
                let mut cycle: Vec<String> = chain[pos..].to_vec();
                let mut key = cycle.clone();
                key.sort();
                if cycles_seen.insert(key) {
                    cycle.push(p.value.clone());
                    errors.push(DefinitionError::at(
                        p.loc.clone(),
                        K::KindCycle {
                            repo: repo.clone(),
                            cycle,
                        },
                    ));
                }
                broken = true;
                break;
            }
            chain.push(p.value.clone());
            cur = p.value.clone();
        }
        if !broken {
            chain.reverse();
            lineages.insert(name.clone(), chain);
        }
    }

    // Triggers: built-ins, declared, then from every figment the type or its kinds include.
    let mut triggers: Vec<Trigger> = RefEvent::ALL
        .iter()
        .map(|e| Trigger {
            name: format!("refs.{repo}.{}", e.as_str()),
            description: format!("A `{repo}` reference was {}.", past_tense(*e)),
            on: vec![*e],
            source: TriggerSource::BuiltIn,
        })
        .collect();
    let mut declared: BTreeMap<String, Trigger> = BTreeMap::new();
    let mut declared_at: HashMap<String, Location> = HashMap::new();
    for t in check_triggers(&r.triggers, errors) {
        if let Some(raw) = r.triggers.iter().find(|x| x.name.value == t.name) {
            declared_at.insert(t.name.clone(), raw.name.loc.clone());
        }
        declared.insert(
            t.name.clone(),
            Trigger {
                name: format!("refs.{repo}.{}", t.name),
                description: t.description,
                on: t.on,
                source: TriggerSource::RefType,
            },
        );
    }
    let mut all_fig_starts = ref_figs.clone();
    for (_, figs) in kind_defs.values() {
        all_fig_starts.extend(figs.iter().copied());
    }
    for f in figments.closure(&all_fig_starts) {
        let node = &figments.nodes[f];
        for t in &node.triggers {
            if declared.contains_key(&t.name) {
                let at = declared_at
                    .get(&t.name)
                    .cloned()
                    .unwrap_or_else(|| r.repo.loc.clone());
                let mut err = DefinitionError::at(
                    at,
                    K::DuplicateTrigger {
                        name: format!("refs.{repo}.{}", t.name),
                    },
                );
                if let Some(raw) = node.raw.triggers.iter().find(|x| x.name.value == t.name) {
                    err = err.also(raw.name.loc.clone());
                }
                errors.push(err);
                continue;
            }
            declared.insert(
                t.name.clone(),
                Trigger {
                    name: format!("refs.{repo}.{}", t.name),
                    description: t.description.clone(),
                    on: t.on.clone(),
                    source: TriggerSource::Figment(node.name.value.clone()),
                },
            );
        }
    }
    triggers.extend(declared.into_values());

    if errors.len() != before {
        return None;
    }
    let namespace = namespace?;

    // Schemas. Every fragment goes once into the type's `$defs`: the base, the figments the
    // type and its kinds include, the kinds. The schema of a value (of no kind, or of one
    // kind) is then the `allOf` of `$ref`s to the fragments that apply to it.
    let base_id = format!("urn:bver:{}:{repo}", info.name);
    let mut defs = Map::new();
    if let Some(s) = &r.schema {
        defs.insert(repo.clone(), schema::fragment_def(&base_id, &s.value));
    }
    for f in figments.closure(&all_fig_starts) {
        if let Some(s) = &figments.nodes[f].raw.schema {
            let key = format!("figment:{}", figments.nodes[f].name.value);
            defs.insert(key, schema::fragment_def(&figments.schema_id(f), &s.value));
        }
    }
    for (name, (k, _)) in &kind_defs {
        if let Some(s) = &k.schema {
            let id = format!("{base_id}:kind:{name}");
            defs.insert(format!("kind:{name}"), schema::fragment_def(&id, &s.value));
        }
    }

    let mut base_parts: Vec<(String, &Value)> = Vec::new();
    if let Some(s) = &r.schema {
        base_parts.push((base_id.clone(), &s.value));
    }
    let base_closure = figments.closure(&ref_figs);
    for &f in &base_closure {
        if let Some(s) = &figments.nodes[f].raw.schema {
            base_parts.push((figments.schema_id(f), &s.value));
        }
    }
    let at = r
        .schema
        .as_ref()
        .map_or_else(|| r.repo.loc.clone(), |s| s.loc.clone());
    let (schema, validator) = build(
        &defs,
        &base_parts,
        r.closed,
        &format!("refs.{repo}"),
        &at,
        errors,
    )?;

    let mut kinds = BTreeMap::new();
    for (name, lineage) in &lineages {
        let mut parts = base_parts.clone();
        let mut starts = ref_figs.clone();
        let mut included: HashSet<usize> = base_closure.iter().copied().collect();
        for k in lineage {
            let Some((raw_kind, figs)) = kind_defs.get(k) else {
                continue;
            };
            starts.extend(figs.iter().copied());
            for f in figments.closure(&starts) {
                if included.insert(f)
                    && let Some(s) = &figments.nodes[f].raw.schema
                {
                    parts.push((figments.schema_id(f), &s.value));
                }
            }
            if let Some(s) = &raw_kind.schema {
                parts.push((format!("{base_id}:kind:{k}"), &s.value));
            }
        }
        let Some((raw_kind, figs)) = kind_defs.get(name) else {
            continue;
        };
        let at = raw_kind
            .schema
            .as_ref()
            .map_or_else(|| raw_kind.name.loc.clone(), |s| s.loc.clone());
        let owner = format!("kind `{name}` of refs.{repo}");
        let Some((schema, validator)) = build(&defs, &parts, r.closed, &owner, &at, errors) else {
            continue;
        };
        kinds.insert(
            name.clone(),
            Kind {
                name: name.clone(),
                parent: raw_kind.parent.as_ref().map(|p| p.value.clone()),
                description: raw_kind.description.clone().unwrap_or_default(),
                fragment: raw_kind.schema.as_ref().map(|s| s.value.clone()),
                figments: figs
                    .iter()
                    .map(|&f| figments.nodes[f].name.value.clone())
                    .collect(),
                lineage: lineage.clone(),
                schema,
                validator,
            },
        );
    }
    if errors.len() != before {
        return None;
    }
    Some(RefType {
        repo: repo.clone(),
        namespace,
        bundle: info.name.clone(),
        description: r.description.clone().unwrap_or_default(),
        closed: r.closed,
        base: r.schema.as_ref().map(|s| s.value.clone()),
        defs,
        figments: ref_figs
            .iter()
            .map(|&f| figments.nodes[f].name.value.clone())
            .collect(),
        schema,
        kinds,
        policy,
        triggers,
        validator,
    })
}

/// Compose one schema body and compile it (with the type's `$defs`); a failure is reported
/// at `at`.
fn build(
    defs: &Map<String, Value>,
    parts: &[(String, &Value)],
    closed: bool,
    owner: &str,
    at: &Location,
    errors: &mut Vec<DefinitionError>,
) -> Option<(Value, jsonschema::Validator)> {
    let parts: Vec<Part<'_>> = parts
        .iter()
        .map(|(id, schema)| Part {
            id: id.clone(),
            schema,
        })
        .collect();
    let body = schema::compose(&parts, closed);
    match jsonschema::draft202012::new(&schema::document(defs, &body)) {
        Ok(v) => Some((body, v)),
        Err(e) => {
            errors.push(DefinitionError::at(
                at.clone(),
                K::BadSchema {
                    owner: owner.to_owned(),
                    pointer: e.instance_path().as_str().to_owned(),
                    message: format!("the composed schema does not compile: {e}"),
                },
            ));
            None
        }
    }
}

fn past_tense(e: RefEvent) -> &'static str {
    match e {
        RefEvent::Created => "created",
        RefEvent::Updated => "updated",
        RefEvent::Deleted => "deleted",
        RefEvent::KindChanged => "given another kind",
        RefEvent::Restored => "restored to an earlier version",
    }
}

fn check_policy(repo: &str, raw: &RawPolicy, errors: &mut Vec<DefinitionError>) -> Policy {
    let mut policy = Policy::default_for(repo);
    for action in Action::ALL {
        let given = match action {
            Action::Read => &raw.read,
            Action::Create => &raw.create,
            Action::Update => &raw.update,
            Action::Delete => &raw.delete,
        };
        let Some(list) = given else { continue };
        let mut scopes = Vec::new();
        for s in list {
            if names::is_scope(&s.value) {
                if !scopes.contains(&s.value) {
                    scopes.push(s.value.clone());
                }
            } else {
                errors.push(DefinitionError::at(
                    s.loc.clone(),
                    K::BadScope {
                        scope: s.value.clone(),
                        action: action.as_str().into(),
                    },
                ));
            }
        }
        let slot = match action {
            Action::Read => &mut policy.read,
            Action::Create => &mut policy.create,
            Action::Update => &mut policy.update,
            Action::Delete => &mut policy.delete,
        };
        *slot = scopes;
    }
    policy
}
