//! Compiling raw definitions into a [`Domain`]: names, versions, ownership of namespaces and
//! repos, the one core bundle, figment includes (and their cycles), kinds and their parents,
//! policies, triggers, and the composed, compiled schema of every reference type and kind.
//!
//! Every check runs even when an earlier one failed; a piece that cannot be checked because
//! something it depends on is broken is skipped silently, so each fault is reported once.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::contract::{self, ContractPackage, ContractType};
use super::error::{DefinitionError, DefinitionErrorKind as K, Location};
use super::expr::Rule;
use super::load::{
    Loaded, Located, RawBundle, RawContract, RawFigment, RawKind, RawPolicy, RawRefType, RawRule,
    RawSchema, RawTrigger,
};
use super::names;
use super::ops::REF_OPERATIONS;
use super::registry::{
    Action, Bundle, Channel, ContractUse, DeclaredTrigger, Domain, Figment, FigmentOperation, Kind,
    Policy, RefEvent, RefType, Role, Trigger, TriggerSource,
};
use super::schema::{self, Part};

/// Compile what was loaded. Returns a domain only when `errors` is (and stays) empty.
pub(crate) fn compile(loaded: Loaded, errors: &mut Vec<DefinitionError>) -> Option<Domain> {
    let Loaded {
        bundles: raw_bundles,
        figments: standalone,
        contracts: raw_contracts,
        unreadable_bundles,
    } = loaded;

    let bundles = check_bundles(&raw_bundles, unreadable_bundles > 0, errors);
    let contracts = compile_contracts(&raw_contracts, errors);
    check_contract_uses(&raw_bundles, &contracts, errors);
    let figments = FigmentTable::build(&raw_bundles, standalone, errors);
    let places = Places::new(&raw_bundles);

    let mut ref_types = BTreeMap::new();
    let mut repo_owner: HashMap<String, (usize, Location)> = HashMap::new();
    for (bi, raw) in raw_bundles.iter().enumerate() {
        let Some(info) = &bundles[bi] else { continue };
        for r in &raw.refs {
            let refs = RefResolver {
                bundle: info,
                raw,
                contracts: &contracts,
                places: &places,
            };
            if let Some(rt) = compile_ref(
                info,
                raw,
                r,
                &figments,
                &mut repo_owner,
                bi,
                &raw_bundles,
                &refs,
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
            channels: compile_channels(&info.name, &info.contracts, raw, &ref_types, errors),
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
        contracts: contracts
            .into_iter()
            .map(|(name, (pkg, _))| (name, pkg))
            .collect(),
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
    /// Its rules, each with where its name is written.
    rules: Vec<(Arc<Rule>, Location)>,
    /// Checked operations, each with where its name is written.
    operations: Vec<(FigmentOperation, Location)>,
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
            let source = format!("figment `{}`", raw.name.value);
            let rules = make_rules(&raw.rules, &source, errors);
            let operations = check_figment_ops(&raw, errors);
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
                rules,
                operations,
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
                    rules: n.rules.into_iter().map(|(r, _)| r).collect(),
                    operations: n.operations.into_iter().map(|(o, _)| o).collect(),
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
        if t.on.is_none() {
            on.extend(RefEvent::ALL);
        }
        for e in t.on.iter().flatten() {
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
        if t.on.as_ref().is_some_and(Vec::is_empty) {
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
            when: t.when.clone(),
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
    refs: &RefResolver<'_>,
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
            when: None,
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
                when: t.when,
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
                    when: t.when.clone(),
                    source: TriggerSource::Figment(node.name.value.clone()),
                },
            );
        }
    }
    triggers.extend(declared.into_values());

    // Operations its figments (and its kinds' figments) add.
    let mut operations: Vec<FigmentOperation> = Vec::new();
    for f in figments.closure(&all_fig_starts) {
        let node = &figments.nodes[f];
        for (op, at) in &node.operations {
            let full = format!("refs.{repo}.{}", op.name);
            let clash = if REF_OPERATIONS.contains(&op.name.as_str()) {
                Some("every reference type has it".to_owned())
            } else {
                operations
                    .iter()
                    .find(|o| o.name == op.name)
                    .map(|o| format!("figment `{}` adds it too", o.figment))
            };
            if let Some(reason) = clash {
                errors.push(DefinitionError::at(
                    at.clone(),
                    K::DuplicateOperation { name: full, reason },
                ));
                continue;
            }
            operations.push(op.clone());
        }
    }

    // Rules: the type's and its figments'; each kind adds its own and its figments'.
    let own_rules = make_rules(&r.rules, &format!("refs.{repo}"), errors);
    let mut kind_rules: BTreeMap<String, Vec<(Arc<Rule>, Location)>> = BTreeMap::new();
    for (name, (k, _)) in &kind_defs {
        let source = format!("kind `{name}` of refs.{repo}");
        kind_rules.insert(name.clone(), make_rules(&k.rules, &source, errors));
    }

    if errors.len() != before {
        return None;
    }
    let namespace = namespace?;

    // Schemas. Every fragment goes once into the type's `$defs`: the base, the figments the
    // type and its kinds include, the kinds. The schema of a value (of no kind, or of one
    // kind) is then the `allOf` of `$ref`s to the fragments that apply to it.
    let base_id = format!("urn:bver:{}:{repo}", info.name);
    let mut defs = Map::new();
    // Every fragment with its `$ref`s to contract types and own reference schemas resolved
    // (the fragments they name are added to `defs`).
    let mut resolved: HashMap<String, Value> = HashMap::new();
    let mut visiting = HashSet::new();
    if let Some(s) = &r.schema {
        let v = refs.resolve(&format!("refs.{repo}"), s, &mut defs, &mut visiting, errors);
        defs.insert(repo.clone(), schema::fragment_def(&base_id, &v));
        resolved.insert(base_id.clone(), v);
    }
    for f in figments.closure(&all_fig_starts) {
        if let Some(s) = &figments.nodes[f].raw.schema {
            let owner = format!("figment `{}`", figments.nodes[f].name.value);
            let v = refs.resolve(&owner, s, &mut defs, &mut visiting, errors);
            let key = format!("figment:{}", figments.nodes[f].name.value);
            defs.insert(key, schema::fragment_def(&figments.schema_id(f), &v));
            resolved.insert(figments.schema_id(f), v);
        }
    }
    for (name, (k, _)) in &kind_defs {
        if let Some(s) = &k.schema {
            let id = format!("{base_id}:kind:{name}");
            let owner = format!("kind `{name}` of refs.{repo}");
            let v = refs.resolve(&owner, s, &mut defs, &mut visiting, errors);
            defs.insert(format!("kind:{name}"), schema::fragment_def(&id, &v));
            resolved.insert(id, v);
        }
    }
    if errors.len() != before {
        return None;
    }
    let fragment = |id: &str| -> &Value { resolved.get(id).unwrap_or(&Value::Null) };

    let mut base_parts: Vec<(String, &Value)> = Vec::new();
    if r.schema.is_some() {
        base_parts.push((base_id.clone(), fragment(&base_id)));
    }
    let base_closure = figments.closure(&ref_figs);
    let mut base_rules: Vec<(Arc<Rule>, Location)> = own_rules;
    for &f in &base_closure {
        if figments.nodes[f].raw.schema.is_some() {
            base_parts.push((figments.schema_id(f), fragment(&figments.schema_id(f))));
        }
        base_rules.extend(figments.nodes[f].rules.iter().cloned());
    }
    let base_rules = unique_rules(repo, base_rules, errors);
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
        let mut rules = base_rules.clone();
        let mut starts = ref_figs.clone();
        let mut included: HashSet<usize> = base_closure.iter().copied().collect();
        for k in lineage {
            let Some((raw_kind, figs)) = kind_defs.get(k) else {
                continue;
            };
            starts.extend(figs.iter().copied());
            for f in figments.closure(&starts) {
                if included.insert(f) {
                    if figments.nodes[f].raw.schema.is_some() {
                        parts.push((figments.schema_id(f), fragment(&figments.schema_id(f))));
                    }
                    rules.extend(figments.nodes[f].rules.iter().cloned());
                }
            }
            if raw_kind.schema.is_some() {
                let id = format!("{base_id}:kind:{k}");
                let v = fragment(&id);
                parts.push((id, v));
            }
            rules.extend(kind_rules.get(k).into_iter().flatten().cloned());
        }
        let rules = unique_rules(repo, rules, errors);
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
                rules: rules.into_iter().map(|(r, _)| r).collect(),
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
        rules: base_rules.into_iter().map(|(r, _)| r).collect(),
        operations,
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

/// Compile declared rules: names, messages, fields.
fn make_rules(
    raw: &[RawRule],
    source: &str,
    errors: &mut Vec<DefinitionError>,
) -> Vec<(Arc<Rule>, Location)> {
    let mut out = Vec::new();
    for r in raw {
        if !names::is_ident(&r.name.value) {
            errors.push(bad_name(&r.name, "rule", names::IDENT_RULE));
            continue;
        }
        let fields = if r.fields.is_empty() {
            r.expr.fields().iter().map(|f| field_pointer(f)).collect()
        } else {
            r.fields.iter().map(|f| field_pointer(&f.value)).collect()
        };
        let rule = Rule {
            name: r.name.value.clone(),
            message: r
                .message
                .clone()
                .unwrap_or_else(|| format!("`{}` must hold", r.expr.source)),
            source: source.to_owned(),
            fields,
            expr: r.expr.clone(),
        };
        out.push((Arc::new(rule), r.name.loc.clone()));
    }
    out
}

/// A field written as a JSON pointer (`/a/b`) or dotted (`a.b`), as a JSON pointer.
fn field_pointer(f: &str) -> String {
    if f.starts_with('/') || f.is_empty() {
        return f.to_owned();
    }
    f.split('.')
        .map(|seg| format!("/{}", seg.replace('~', "~0").replace('/', "~1")))
        .collect()
}

/// Report rules that share a name; keep the first of each.
fn unique_rules(
    repo: &str,
    rules: Vec<(Arc<Rule>, Location)>,
    errors: &mut Vec<DefinitionError>,
) -> Vec<(Arc<Rule>, Location)> {
    let mut seen: HashMap<String, (String, Location)> = HashMap::new();
    let mut out = Vec::new();
    for (rule, at) in rules {
        if let Some((first, first_at)) = seen.get(&rule.name) {
            if first_at != &at {
                errors.push(
                    DefinitionError::at(
                        at.clone(),
                        K::DuplicateRule {
                            repo: repo.to_owned(),
                            name: rule.name.clone(),
                            first: first.clone(),
                            second: rule.source.clone(),
                        },
                    )
                    .also(first_at.clone()),
                );
            }
            continue;
        }
        seen.insert(rule.name.clone(), (rule.source.clone(), at.clone()));
        out.push((rule, at));
    }
    out
}

/// Check a figment's operations: names, handlers, scopes, schemas.
fn check_figment_ops(
    raw: &RawFigment,
    errors: &mut Vec<DefinitionError>,
) -> Vec<(FigmentOperation, Location)> {
    let mut out = Vec::new();
    for op in &raw.operations {
        let before = errors.len();
        if !names::is_ident(&op.name.value) {
            errors.push(bad_name(&op.name, "operation", names::IDENT_RULE));
        }
        let h = &op.handler.value;
        if h.is_empty()
            || !h.starts_with(|c: char| c.is_ascii_lowercase())
            || !h
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c))
        {
            errors.push(bad_name(
                &op.handler,
                "handler",
                "a lowercase letter, then lowercase letters, digits, `_`, `.` or `-`",
            ));
        }
        let mut scopes = None;
        if let Some(list) = &op.scopes {
            let mut ok = Vec::new();
            for sc in list {
                if names::is_scope(&sc.value.replace("{repo}", "repo")) {
                    ok.push(sc.value.clone());
                } else {
                    errors.push(DefinitionError::at(
                        sc.loc.clone(),
                        K::BadScope {
                            scope: sc.value.clone(),
                            action: format!("operation `{}`", op.name.value),
                        },
                    ));
                }
            }
            scopes = Some(ok);
        }
        for s in [&op.input, &op.output].into_iter().flatten() {
            if let Some((pointer, target)) = schema::external_refs(&s.value).into_iter().next() {
                errors.push(DefinitionError::at(
                    s.loc_at(&pointer),
                    K::BadRef {
                        owner: format!("operation `{}`", op.name.value),
                        target,
                        reason: "the input and output schemas of a figment operation may only \
                                 use `$ref` inside themselves"
                            .into(),
                    },
                ));
            }
        }
        if errors.len() != before {
            continue;
        }
        out.push((
            FigmentOperation {
                name: op.name.value.clone(),
                figment: raw.name.value.clone(),
                description: op.description.clone().unwrap_or_default(),
                handler: h.clone(),
                mutation: op.mutation,
                scopes,
                input: op.input.as_ref().map_or_else(
                    || json!({"type": "object", "additionalProperties": false}),
                    |s| s.value.clone(),
                ),
                output: op
                    .output
                    .as_ref()
                    .map_or_else(|| json!({}), |s| s.value.clone()),
            },
            op.name.loc.clone(),
        ));
    }
    out
}

/// Loaded contract packages by name, with where each name is written.
pub(crate) type Contracts = BTreeMap<String, (ContractPackage, Location)>;

pub(crate) fn compile_contracts(
    raw: &[RawContract],
    errors: &mut Vec<DefinitionError>,
) -> Contracts {
    let mut out: Contracts = BTreeMap::new();
    for c in raw {
        let before = errors.len();
        if !names::is_package_name(&c.name.value) {
            errors.push(bad_name(&c.name, "contract package", names::PACKAGE_RULE));
        }
        if let Err(reason) = names::check_semver(&c.version.value) {
            errors.push(DefinitionError::at(
                c.version.loc.clone(),
                K::BadVersion {
                    version: c.version.value.clone(),
                    reason,
                },
            ));
        }
        if let Some((first, first_loc)) = out.get(&c.name.value) {
            errors.push(
                DefinitionError::at(
                    c.name.loc.clone(),
                    K::DuplicateContract {
                        name: c.name.value.clone(),
                        first_file: first.file.clone(),
                        second_file: c.file.clone(),
                    },
                )
                .also(first_loc.clone()),
            );
            continue;
        }
        let mut types = BTreeMap::new();
        let major = contract::major(&c.version.value);
        for t in &c.types {
            if !contract::is_type_name(&t.name.value) {
                errors.push(bad_name(&t.name, "contract type", contract::TYPE_RULE));
                continue;
            }
            let Some(s) = &t.schema else { continue };
            for (pointer, target) in schema::external_refs(&s.value) {
                let same = contract::parse_type_ref(&target)
                    .is_some_and(|(p, m, _)| p == c.name.value && m == major);
                if !same {
                    errors.push(DefinitionError::at(
                        s.loc_at(&pointer),
                        K::BadRef {
                            owner: format!("contract type `{}`", t.name.value),
                            target,
                            reason: format!(
                                "a contract type may only refer to types of its own package \
                                 and major version (`{}@{major}/Type`)",
                                c.name.value
                            ),
                        },
                    ));
                }
            }
            types.insert(
                t.name.value.clone(),
                ContractType {
                    name: t.name.value.clone(),
                    description: t.description.clone().unwrap_or_default(),
                    schema: s.value.clone(),
                },
            );
        }
        for t in types.values() {
            for (_, target) in schema::external_refs(&t.schema) {
                if let Some((_, _, ty)) = contract::parse_type_ref(&target)
                    && !types.contains_key(ty)
                    && let Some(raw_t) = c.types.iter().find(|x| x.name.value == t.name)
                {
                    errors.push(DefinitionError::at(
                        raw_t.name.loc.clone(),
                        K::UnknownContractType {
                            package: c.name.value.clone(),
                            ty: ty.to_owned(),
                            known: types.keys().cloned().collect(),
                        },
                    ));
                }
            }
        }
        if errors.len() != before {
            continue;
        }
        out.insert(
            c.name.value.clone(),
            (
                ContractPackage {
                    name: c.name.value.clone(),
                    version: c.version.value.clone(),
                    description: c.description.clone().unwrap_or_default(),
                    types,
                    file: c.file.clone(),
                },
                c.name.loc.clone(),
            ),
        );
    }
    out
}

/// Each bundle's contract packages must be loaded in a version at least the one it asks for
/// (same major), and bundles must agree on each package's major version.
fn check_contract_uses(
    raw_bundles: &[RawBundle],
    contracts: &Contracts,
    errors: &mut Vec<DefinitionError>,
) {
    let mut first_use: HashMap<String, (String, String, Location)> = HashMap::new();
    for b in raw_bundles {
        let Some(h) = &b.header else { continue };
        for c in &h.contracts {
            let Ok((name, version)) = names::parse_contract(&c.value) else {
                continue;
            };
            if let Some((other, other_version, other_loc)) = first_use.get(name) {
                if contract::major(other_version) != contract::major(version) {
                    errors.push(
                        DefinitionError::at(
                            c.loc.clone(),
                            K::IncompatibleContract {
                                package: name.to_owned(),
                                bundle: h.name.value.clone(),
                                version: version.to_owned(),
                                other: other.clone(),
                                other_version: other_version.clone(),
                            },
                        )
                        .also(other_loc.clone()),
                    );
                    continue;
                }
            } else {
                first_use.insert(
                    name.to_owned(),
                    (h.name.value.clone(), version.to_owned(), c.loc.clone()),
                );
            }
            let loaded = contracts.get(name).map(|(p, _)| p);
            let fits = loaded.is_some_and(|p| {
                p.major() == contract::major(version)
                    && contract::triple(&p.version) >= contract::triple(version)
            });
            if !fits {
                errors.push(DefinitionError::at(
                    c.loc.clone(),
                    K::MissingContract {
                        bundle: h.name.value.clone(),
                        package: name.to_owned(),
                        wanted: version.to_owned(),
                        loaded: loaded.map(|p| p.version.clone()),
                    },
                ));
            }
        }
    }
}

/// Where each bundle lives, and which file is which repo's schema, to recognise a `$ref` to
/// another bundle's reference schema.
struct Places {
    /// (canonical bundle directory, bundle name).
    dirs: Vec<(PathBuf, String)>,
    /// canonical schema file → (bundle, repo).
    files: HashMap<PathBuf, (String, String)>,
    /// bundle → its repos.
    repos: HashMap<String, Vec<String>>,
}

impl Places {
    fn new(raw: &[RawBundle]) -> Self {
        let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        let mut places = Self {
            dirs: Vec::new(),
            files: HashMap::new(),
            repos: HashMap::new(),
        };
        for b in raw {
            let Some(h) = &b.header else { continue };
            let name = h.name.value.clone();
            places.dirs.push((canon(&b.dir), name.clone()));
            for r in &b.refs {
                places
                    .repos
                    .entry(name.clone())
                    .or_default()
                    .push(r.repo.value.clone());
                if let Some(s) = &r.schema
                    && let Some((file, _)) = &s.json_file
                {
                    places
                        .files
                        .insert(canon(file), (name.clone(), r.repo.value.clone()));
                }
            }
        }
        places
    }
}

/// Resolves the `$ref`s of one bundle's fragments that point outside them.
struct RefResolver<'a> {
    bundle: &'a BundleInfo,
    raw: &'a RawBundle,
    contracts: &'a Contracts,
    places: &'a Places,
}

impl RefResolver<'_> {
    /// `schema` with every `$ref` to a contract type or an own reference schema renamed to
    /// the `$id` that fragment has in `defs` (where it is added); every other external
    /// `$ref` is an error.
    fn resolve(
        &self,
        owner: &str,
        s: &RawSchema,
        defs: &mut Map<String, Value>,
        visiting: &mut HashSet<String>,
        errors: &mut Vec<DefinitionError>,
    ) -> Value {
        let mut renames: HashMap<String, String> = HashMap::new();
        for (pointer, target) in schema::external_refs(&s.value) {
            let at = s.loc_at(&pointer);
            match self.classify(owner, &target, s, defs, visiting, errors) {
                Ok(Some(id)) => {
                    renames.insert(target, id);
                }
                Ok(None) => {}
                Err(kind) => errors.push(DefinitionError::at(at, kind)),
            }
        }
        if renames.is_empty() {
            return s.value.clone();
        }
        schema::rewrite_refs(&s.value, &|r| renames.get(r).cloned())
    }

    fn classify(
        &self,
        owner: &str,
        target: &str,
        s: &RawSchema,
        defs: &mut Map<String, Value>,
        visiting: &mut HashSet<String>,
        errors: &mut Vec<DefinitionError>,
    ) -> Result<Option<String>, K> {
        let own = &self.bundle.name;
        if let Some((pkg, major, ty)) = contract::parse_type_ref(target) {
            let declared = self.bundle.contracts.iter().find(|c| c.name == pkg);
            let undeclared = |reason: String| K::UndeclaredContract {
                owner: owner.to_owned(),
                target: target.to_owned(),
                package: pkg.to_owned(),
                reason,
            };
            let Some(use_) = declared else {
                return Err(undeclared(format!(
                    "bundle `{own}` does not list package `{pkg}` in `[bundle] contracts`"
                )));
            };
            if contract::major(&use_.version) != major {
                return Err(undeclared(format!(
                    "bundle `{own}` uses `{pkg}@{}`, major version {}",
                    use_.version,
                    contract::major(&use_.version)
                )));
            }
            // A package that is not loaded is reported once, at the bundle; a permissive
            // stand-in keeps the composed schema compiling meanwhile.
            let Some((package, _)) = self.contracts.get(pkg) else {
                let id = contract::type_id(pkg, major, ty);
                defs.insert(contract::type_key(pkg, major, ty), json!({ "$id": id }));
                return Ok(Some(id));
            };
            if !package.types.contains_key(ty) {
                return Err(K::UnknownContractType {
                    package: pkg.to_owned(),
                    ty: ty.to_owned(),
                    known: package.types.keys().cloned().collect(),
                });
            }
            add_contract_type(package, ty, defs);
            return Ok(Some(contract::type_id(pkg, major, ty)));
        }
        let bare = target.split('#').next().unwrap_or("");
        if let Some(rest) = bare.strip_prefix("urn:bver:") {
            let parts: Vec<&str> = rest.split(':').collect();
            let bad = |reason: &str| K::BadRef {
                owner: owner.to_owned(),
                target: target.to_owned(),
                reason: reason.to_owned(),
            };
            let [bundle, repo] = parts.as_slice() else {
                return Err(bad("only the base schema of a reference type \
                                (`urn:bver:BUNDLE:REPO`) can be named this way; include a \
                                figment instead of naming it"));
            };
            if bundle != own {
                if self
                    .places
                    .repos
                    .get(*bundle)
                    .is_some_and(|r| r.iter().any(|x| x == repo))
                {
                    return Err(K::ForeignSchema {
                        owner: owner.to_owned(),
                        target: target.to_owned(),
                        repo: (*repo).to_owned(),
                        other: (*bundle).to_owned(),
                    });
                }
                return Err(bad(&format!("no repo `{repo}` in a bundle `{bundle}`")));
            }
            let Some(other) = self.raw.refs.iter().find(|x| x.repo.value == *repo) else {
                return Err(bad(&format!("bundle `{own}` has no repo `{repo}`")));
            };
            let Some(other_schema) = &other.schema else {
                return Err(bad(&format!("repo `{repo}` has no base schema")));
            };
            if visiting.insert(bare.to_owned()) {
                let v = self.resolve(
                    &format!("refs.{repo}"),
                    other_schema,
                    defs,
                    visiting,
                    errors,
                );
                if !defs.contains_key(*repo) {
                    defs.insert((*repo).to_owned(), schema::fragment_def(bare, &v));
                }
            }
            return Ok(None);
        }
        // A file path: another bundle's schema file, or anything else.
        let base = s
            .json_file
            .as_ref()
            .and_then(|(f, _)| f.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| self.raw.dir.clone());
        let path = base.join(bare);
        let canon = std::fs::canonicalize(&path).unwrap_or(path);
        let foreign_file = self.places.files.get(&canon).filter(|(b, _)| b != own);
        let foreign_dir = self
            .places
            .dirs
            .iter()
            .find(|(d, b)| b != own && canon.starts_with(d));
        if let Some((other, repo)) = foreign_file {
            return Err(K::ForeignSchema {
                owner: owner.to_owned(),
                target: target.to_owned(),
                repo: repo.clone(),
                other: other.clone(),
            });
        }
        if let Some((_, other)) = foreign_dir {
            return Err(K::ForeignSchema {
                owner: owner.to_owned(),
                target: target.to_owned(),
                repo: "?".into(),
                other: other.clone(),
            });
        }
        Err(K::BadRef {
            owner: owner.to_owned(),
            target: target.to_owned(),
            reason: "schemas are not fetched from files or the network".into(),
        })
    }
}

/// Put contract type `ty` (and the types of its package it refers to) into `defs`.
fn add_contract_type(package: &ContractPackage, ty: &str, defs: &mut Map<String, Value>) {
    let major = package.major();
    let key = contract::type_key(&package.name, major, ty);
    if defs.contains_key(&key) {
        return;
    }
    let Some(t) = package.types.get(ty) else {
        return;
    };
    let rename = |r: &str| contract::parse_type_ref(r).map(|(p, m, x)| contract::type_id(p, m, x));
    let body = schema::rewrite_refs(&t.schema, &rename);
    let def = match &body {
        Value::Object(_) => {
            schema::fragment_def(&contract::type_id(&package.name, major, ty), &body)
        }
        other => json!({
            "$id": contract::type_id(&package.name, major, ty),
            "allOf": [other],
        }),
    };
    defs.insert(key, def);
    for (_, target) in schema::external_refs(&t.schema) {
        if let Some((_, _, other)) = contract::parse_type_ref(&target) {
            add_contract_type(package, other, defs);
        }
    }
}

/// The channels of one bundle: each trigger must be one some reference type emits, each repo
/// must exist, the scope must parse, the contract must be `package@major/Type` of a package
/// the bundle declares with that major version.
fn compile_channels(
    bundle: &str,
    uses: &BTreeSet<ContractUse>,
    raw: &RawBundle,
    ref_types: &BTreeMap<String, RefType>,
    errors: &mut Vec<DefinitionError>,
) -> Vec<Channel> {
    let mut out = Vec::new();
    for c in &raw.channels {
        let section = format!("[channels.{}]", c.name.value);
        let invalid = |loc: &Location, message: String| {
            DefinitionError::at(
                loc.clone(),
                K::InvalidValue {
                    section: section.clone(),
                    message,
                },
            )
        };
        let mut triggers = BTreeSet::new();
        for t in &c.triggers {
            let known = ref_types
                .values()
                .any(|rt| rt.triggers.iter().any(|x| x.name == t.value));
            if known {
                triggers.insert(t.value.clone());
            } else {
                errors.push(invalid(
                    &t.loc,
                    format!(
                        "no reference type emits the trigger `{}` (write its full name, e.g. `refs.site.changed`)",
                        t.value
                    ),
                ));
            }
        }
        for r in &c.repos {
            match ref_types.get(&r.value) {
                Some(rt) => {
                    for t in rt
                        .triggers
                        .iter()
                        .filter(|t| t.source == TriggerSource::BuiltIn)
                    {
                        triggers.insert(t.name.clone());
                    }
                }
                None => errors.push(invalid(&r.loc, format!("no repo `{}`", r.value))),
            }
        }
        if triggers.is_empty() && c.triggers.is_empty() && c.repos.is_empty() {
            errors.push(invalid(
                &c.name.loc,
                "a channel needs `triggers` or `repos` (what flows into it)".into(),
            ));
        }
        let scope = match &c.scope {
            Some(s) => {
                if bver_auth::Scope::parse(&s.value).is_err() {
                    errors.push(invalid(
                        &s.loc,
                        format!("`{}` is not a valid scope", s.value),
                    ));
                }
                s.value.clone()
            }
            None => format!("eager:subscribe:{}", c.name.value),
        };
        let contract = c.contract.as_ref().and_then(|ct| {
            let Some((package, major, ty)) = contract::parse_type_ref(&ct.value) else {
                errors.push(invalid(
                    &ct.loc,
                    format!("`{}` is not `package@major/Type`", ct.value),
                ));
                return None;
            };
            let declared = uses.iter().any(|u| {
                u.name == package
                    && u.version.split('.').next().and_then(|m| m.parse::<u64>().ok()) == Some(major)
            });
            if !declared {
                errors.push(invalid(
                    &ct.loc,
                    format!(
                        "bundle `{bundle}` does not declare the contract package `{package}` at major version {major} (add it to `contracts` in [bundle])"
                    ),
                ));
            }
            Some((package.to_owned(), major, ty.to_owned()))
        });
        out.push(Channel {
            name: c.name.value.clone(),
            description: c.description.clone().unwrap_or_default(),
            triggers: triggers.into_iter().collect(),
            scope,
            contract,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}
