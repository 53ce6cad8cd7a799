EAPI=8
DESCRIPTION="swarm test fixture: dev-lang/lang"
HOMEPAGE="https://example.invalid/swarm"
LICENSE="MIT"
KEYWORDS="amd64"
S="${WORKDIR}"
SLOT="2"
src_install() {
	dodir /usr/share/swarm-fixture
	echo "${CATEGORY}/${PF}" > "${ED}/usr/share/swarm-fixture/${PN}-${SLOT%/*}" || die
}
