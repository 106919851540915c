#ifndef PKG05_L05_01_H
#define PKG05_L05_01_H
#include <string>
#include <vector>

namespace l05_01 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l05_01

#endif
