// The guideline's rule in the browser, read from `categories.rule_table()` (site.json's
// "rule"): the category of a set of descriptor values and the one-line reason, as
// `categories.classify` and `categories.rule_path` give them. Nothing of the rule is
// written here; a browser test checks every combination of values against Python.

// values: {composition: "solid", ...}, or {nodule: false}
export function ruleCategory(table, values) {
  if (values.nodule === false) return table.no_nodule_category;
  for (const rule of table.rules) {
    const holds = rule.any_of.some((condition) =>
      Object.entries(condition).every(([name, allowed]) => allowed.includes(values[name])));
    if (holds) return rule.category;
  }
  throw new Error("the rule table has no rule that always applies");
}

// `tr` translates each word or phrase (the page passes its catalogue; Python's is English).
export function rulePath(table, values, tr = (text) => text) {
  const path = table.path;
  const category = ruleCategory(table, values);
  const label = path.label_format.replace("{category}", String(category));
  if (values.nodule === false) return `${tr(path.no_nodule)}${path.arrow}${label}`;
  const parts = path.descriptors.map((name) => tr(table.words[name][values[name]]));
  for (const [name, said] of Object.entries(table.high_risk)) {
    if (!path.descriptors.includes(name) && values[name] in said) parts.push(tr(said[values[name]]));
  }
  return `${parts.join(path.separator)}${path.arrow}${label}`;
}

// inference.descriptors.rule_category: (label, probabilities over classNames, path) from
// each descriptor's value probabilities ({name: {values, p}}), the heads taken as
// independent; with the category head and a class "1", class 1 keeps the head's share.
export function ruleDistribution(table, heads, classNames, head = null) {
  const names = Object.keys(table.descriptors);
  const index = Object.fromEntries(classNames.map((c, i) => [c, i]));
  let out = new Array(classNames.length).fill(0);
  const values = {};
  const walk = (d, weight) => {
    if (d === names.length) {
      const label = String(ruleCategory(table, values));
      if (label in index) out[index[label]] += weight;
      return;
    }
    const { values: vocab, p } = heads[names[d]];
    for (let i = 0; i < vocab.length; i++) {
      if (weight * p[i] === 0) continue;
      values[names[d]] = vocab[i];
      walk(d + 1, weight * p[i]);
    }
  };
  walk(0, 1);
  const total = out.reduce((a, b) => a + b, 0);
  out = total > 0 ? out.map((v) => v / total) : out.map(() => 1 / classNames.length);
  const argmax = (p) => p.reduce((best, v, i) => (v > p[best] ? i : best), 0);
  let top = Object.fromEntries(names.map((n) => [n, heads[n].values[argmax(heads[n].p)]]));
  if (head && "1" in index) {
    const normal = head[index["1"]];
    out = out.map((v) => v * (1 - normal));
    out[index["1"]] = normal;
    if (argmax(head) === index["1"]) top = { nodule: false };
  }
  let label = String(ruleCategory(table, top));
  if (!(label in index)) label = classNames[argmax(out)];
  return { label, probabilities: out, path: rulePath(table, top), top };
}
