EAPI=8
DESCRIPTION="swarm test fixture: app-misc/hello"
HOMEPAGE="https://example.invalid/swarm"
LICENSE="|| ( MIT BSD ) ssl? ( BSD ) !ssl? ( GPL-2 )"
RESTRICT="debug? ( strip ) !debug? ( test )"
KEYWORDS="amd64"
S="${WORKDIR}"
SLOT="0"
IUSE="+ssl debug"
RDEPEND="dev-libs/libbar ssl? ( dev-libs/libssl:= ) debug? ( dev-util/buildtool )"
DEPEND="${RDEPEND}"
BDEPEND="dev-util/buildtool"
src_install() {
	dodir /usr/share/swarm-fixture
	echo "${CATEGORY}/${PF}" > "${ED}/usr/share/swarm-fixture/${PN}-${SLOT%/*}" || die
}
