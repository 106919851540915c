#ifndef PKG05_L05_02_H
#define PKG05_L05_02_H
#include <string>
#include <vector>

namespace l05_02 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l05_02

#endif
