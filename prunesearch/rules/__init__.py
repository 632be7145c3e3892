"""Width patterns and design rules (torch-free).

``extract_pattern(pruned_arch, provenance) -> WidthPattern``; ``fit_rule(patterns, kind) ->
DesignRule``; ``apply_rule(rule, target, budget) -> Architecture`` (any family and depth, always
through the one budget solver); rule and pattern files as YAML/JSON with provenance.
"""

from .pattern import (
    PatternEntry,
    Provenance,
    WidthPattern,
    conv_plan,
    extract_pattern,
    load_pattern,
    save_pattern,
)
from .rule import (
    RULE_FILE,
    RULE_FORMAT,
    RULE_KINDS,
    DesignRule,
    RuleKind,
    RuleLevel,
    apply_rule,
    fit_rule,
    fit_rules,
    is_variant,
    load_rule,
    lookup,
    variant_rule,
    remap_stages,
    rule_keep_ratios,
    rule_path,
    save_rule,
)

__all__ = [
    "DesignRule", "PatternEntry", "Provenance", "RULE_FILE", "RULE_FORMAT", "RULE_KINDS", "RuleKind",
    "RuleLevel", "WidthPattern", "apply_rule", "conv_plan", "extract_pattern", "fit_rule", "fit_rules",
    "is_variant", "load_pattern", "lookup", "variant_rule",
    "load_rule", "remap_stages", "rule_keep_ratios", "rule_path", "save_pattern", "save_rule",
]
