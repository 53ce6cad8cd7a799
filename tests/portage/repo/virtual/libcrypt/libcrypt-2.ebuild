EAPI=8
DESCRIPTION="swarm test fixture: virtual/libcrypt"
HOMEPAGE="https://example.invalid/swarm"
LICENSE="MIT"
KEYWORDS="amd64"
S="${WORKDIR}"
SLOT="0/2"
RDEPEND="sys-libs/libxcrypt:="
