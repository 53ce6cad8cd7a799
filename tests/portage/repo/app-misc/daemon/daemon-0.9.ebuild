EAPI=8
DESCRIPTION="swarm test fixture: app-misc/daemon"
HOMEPAGE="https://example.invalid/swarm"
LICENSE="MIT"
KEYWORDS="amd64"
S="${WORKDIR}"
SLOT="0"
RDEPEND="acct-user/builder dev-lang/lang:2 virtual/libcrypt"
src_install() {
	dodir /usr/share/swarm-fixture
	echo "${CATEGORY}/${PF}" > "${ED}/usr/share/swarm-fixture/${PN}-${SLOT%/*}" || die
}
