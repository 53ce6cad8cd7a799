EAPI=8
DESCRIPTION="swarm test fixture: acct-user/builder"
HOMEPAGE="https://example.invalid/swarm"
LICENSE="MIT"
KEYWORDS="amd64"
S="${WORKDIR}"
SLOT="0"
RDEPEND="acct-group/builder"
src_install() {
	dodir /usr/share/swarm-fixture
	echo "${CATEGORY}/${PF}" > "${ED}/usr/share/swarm-fixture/${CATEGORY}-${PN}-${SLOT%/*}" || die
}
