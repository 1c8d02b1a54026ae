//! The static bound on what a pipeline's templates can render, decided at build.
//!
//! A template copies what it refers to: `{{ a.x }}{{ a.x }}` renders twice the size of step
//! `a`'s output. Following the references of each step gives its *factor*: how many times the
//! size of the largest source (the request, or the output of a step that renders nothing of its
//! own, such as a plugin's answer) its output can be. A step's factor is the sum of its
//! references' factors, and at least 1 (its output may be as large as what it was given). A
//! chain of steps that each copy the one before more than once grows the factor
//! geometrically; past [`MAX_FACTOR`] the config is refused, naming the chain, before one
//! request can render 2^40 bytes. The per-run budget ([`RenderBudget`]) bounds the rest.
//!
//! Positions are the run's output slots (docs/ARCHITECTURE.md, "Branching"): a `step.switch`
//! comes after the steps nested in it, and its output is *one* of theirs, so its factor is the
//! largest of theirs rather than the sum.
//!
//! [`RenderBudget`]: crate::extension::template::RenderBudget

/// The largest factor a step's output may have over its sources.
pub(super) const MAX_FACTOR: u64 = 1000;

/// The first step whose factor passes [`MAX_FACTOR`]: its position and why, naming the chain.
///
/// `references[i]` holds step `i`'s references: `None` for the request, else an earlier step.
/// `alternatives[i]` is true when step `i`'s output is one of its references' (a switch).
pub(super) fn check(
    names: &[String],
    references: &[Vec<Option<usize>>],
    alternatives: &[bool],
) -> Option<(usize, String)> {
    let mut factors: Vec<u64> = Vec::with_capacity(references.len());
    for (i, refs) in references.iter().enumerate() {
        let each = refs.iter().map(|r| match r {
            Some(j) => factors.get(*j).copied().unwrap_or(1),
            None => 1,
        });
        let factor = match alternatives.get(i).copied().unwrap_or(false) {
            true => each.max().unwrap_or(1),
            false => each.fold(0u64, u64::saturating_add).max(1),
        };
        if factor > MAX_FACTOR {
            return Some((i, explain(names, references, &factors, i, factor)));
        }
        factors.push(factor);
    }
    None
}

fn explain(
    names: &[String],
    references: &[Vec<Option<usize>>],
    factors: &[u64],
    offender: usize,
    factor: u64,
) -> String {
    // Back from the offender along its largest contributor, while that one multiplies too.
    let factor_of = |j: usize| factors.get(j).copied().unwrap_or(1);
    let mut chain = vec![offender];
    let mut at = offender;
    while let Some(next) = references[at]
        .iter()
        .flatten()
        .copied()
        .max_by_key(|&j| factor_of(j))
        && factor_of(next) > 1
    {
        chain.push(next);
        at = next;
    }
    chain.reverse();
    let named: Vec<String> = chain
        .iter()
        .map(|&i| format!("{:?}", names.get(i).map(String::as_str).unwrap_or("?")))
        .collect();
    let size = if factor == u64::MAX {
        "more than 18446744073709551615".to_owned()
    } else {
        factor.to_string()
    };
    format!(
        "this step's output can be {size} times the size of the request (or of a step output it copies): the steps {} each copy earlier output more than once; at most {MAX_FACTOR} times is allowed. Refer to each value once, or build the large value in a plugin",
        named.join(" -> ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("s{i}")).collect()
    }

    #[test]
    fn a_doubling_chain_is_refused_at_the_step_that_passes_the_limit() {
        // s0 copies the request twice; each later step copies the one before twice.
        let mut references = vec![vec![None, None]];
        references.extend((1..40).map(|i| vec![Some(i - 1), Some(i - 1)]));
        let (at, why) = check(&names(40), &references, &[]).expect("refused");
        assert_eq!(at, 9, "2^10 = 1024 is the first factor past 1000");
        assert!(why.contains("1024 times"), "{why}");
        assert!(
            why.contains(r#""s0" -> "s1""#) && why.contains(r#""s9""#),
            "{why}"
        );
    }

    #[test]
    fn copying_once_per_step_never_grows() {
        let mut references = vec![vec![None]];
        references.extend((1..200).map(|i| vec![Some(i - 1)]));
        assert_eq!(check(&names(200), &references, &[]), None);
        // Many references to the request side by side add up, and stay within bounds.
        assert_eq!(check(&names(1), &[vec![None; 1000]], &[]), None);
        assert!(check(&names(1), &[vec![None; 1001]], &[]).is_some());
    }

    #[test]
    fn a_switch_is_as_large_as_its_largest_branch() {
        // s0 and s1 each copy the request 600 times; s2 is a switch over them.
        let references = vec![vec![None; 600], vec![None; 600], vec![Some(0), Some(1)]];
        assert_eq!(check(&names(3), &references, &[false, false, true]), None);
        let (at, why) = check(&names(3), &references, &[]).expect("summed, it is refused");
        assert_eq!(at, 2);
        assert!(why.contains("1200 times"), "{why}");
    }
}
