#ifndef PKG05_L05_00_H
#define PKG05_L05_00_H
#include <string>
#include <vector>

namespace l05_00 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l05_00

#endif
