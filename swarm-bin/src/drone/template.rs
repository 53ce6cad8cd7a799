//! The builder command: a template split into words once (at startup), then
//! `{atom}`, `{category}`, `{pn}` and `{pf}` substituted word by word.
//!
//! No shell ever sees the result, so an atom cannot inject anything; the atom
//! has also passed `Atom::parse`, which admits only Portage's characters.

use swarm_core::Atom;

/// The argv for one build.
///
/// `{atom}` is the normalised atom, which already carries its operator (`=`
/// for a versioned atom). `={atom}`, the form of DESIGN §6 and of v3 configs,
/// means the same thing rather than `==cat/pkg-1`.
pub(crate) fn argv(template: &[String], atom: &Atom) -> Vec<String> {
    template
        .iter()
        .map(|word| {
            word.replace("={atom}", "{atom}")
                .replace("{atom}", atom.as_str())
                .replace("{category}", atom.category())
                .replace("{pn}", atom.pn())
                .replace("{pf}", atom.pf())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drone::config::DEFAULT_BUILDER;

    fn words(t: &str) -> Vec<String> {
        shell_words::split(t).expect("splits")
    }

    fn atom(a: &str) -> Atom {
        Atom::parse(a).expect("atom")
    }

    #[test]
    fn the_default_template_gives_emerge_an_exact_versioned_atom() {
        let argv = argv(&words(DEFAULT_BUILDER), &atom("dev-libs/icu-74.2"));
        assert_eq!(
            argv,
            [
                "emerge",
                "--oneshot",
                "--buildpkg",
                "--usepkg=n",
                "--getbinpkg=n",
                "=dev-libs/icu-74.2"
            ]
        );
    }

    #[test]
    fn the_design_docs_form_with_an_explicit_equals_sign_works_too() {
        let t = words("emerge --oneshot --buildpkg --usepkg=n ={atom}");
        assert_eq!(
            argv(&t, &atom("dev-libs/icu-74.2"))[4],
            "=dev-libs/icu-74.2"
        );
        assert_eq!(argv(&t, &atom("virtual/libc"))[4], "virtual/libc");
        assert_eq!(argv(&t, &atom(">=dev-libs/icu-74"))[4], ">=dev-libs/icu-74");
    }

    #[test]
    fn every_placeholder_is_substituted_inside_words() {
        let t = words("build --pkg {category}/{pn} --out '/pkgs/{category}/{pf}.gpkg.tar' {atom}");
        assert_eq!(
            argv(&t, &atom("=sys-devel/gcc-13.2.1_p20240113-r1")),
            [
                "build",
                "--pkg",
                "sys-devel/gcc",
                "--out",
                "/pkgs/sys-devel/gcc-13.2.1_p20240113-r1.gpkg.tar",
                "=sys-devel/gcc-13.2.1_p20240113-r1"
            ]
        );
    }

    #[test]
    fn an_unversioned_atom_keeps_no_operator() {
        let a = atom("virtual/libc");
        assert_eq!(
            argv(&words("x {atom} {pn} {pf}"), &a),
            ["x", "virtual/libc", "libc", "libc"]
        );
    }

    #[test]
    fn shell_syntax_in_a_template_stays_literal() {
        let t = words("echo {atom}; rm -rf / && $(id)");
        let out = argv(&t, &atom("a/b-1"));
        assert_eq!(out, ["echo", "=a/b-1;", "rm", "-rf", "/", "&&", "$(id)"]);
    }
}
