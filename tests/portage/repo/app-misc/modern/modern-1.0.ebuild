EAPI=8
DESCRIPTION="swarm test fixture: app-misc/modern"
HOMEPAGE="https://example.invalid/swarm"
LICENSE="MIT"
KEYWORDS="amd64"
S="${WORKDIR}"
SLOT="0"
RDEPEND="!app-misc/legacy"
src_install() {
	dodir /usr/share/swarm-fixture
	echo "${CATEGORY}/${PF}" > "${ED}/usr/share/swarm-fixture/${PN}-${SLOT%/*}" || die
}
