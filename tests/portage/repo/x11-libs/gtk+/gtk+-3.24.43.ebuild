EAPI=8
DESCRIPTION="swarm test fixture: x11-libs/gtk+"
HOMEPAGE="https://example.invalid/swarm"
LICENSE="MIT"
KEYWORDS="amd64"
S="${WORKDIR}"
SLOT="3"
RDEPEND="dev-libs/libfoo virtual/libcrypt"
DEPEND="${RDEPEND}"
src_install() {
	dodir /usr/share/swarm-fixture
	echo "${CATEGORY}/${PF}" > "${ED}/usr/share/swarm-fixture/${PN}-${SLOT%/*}" || die
}
