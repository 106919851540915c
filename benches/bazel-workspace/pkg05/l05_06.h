#ifndef PKG05_L05_06_H
#define PKG05_L05_06_H
#include <string>
#include <vector>

namespace l05_06 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l05_06

#endif
