#ifndef PKG05_L05_07_H
#define PKG05_L05_07_H
#include <string>
#include <vector>

namespace l05_07 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l05_07

#endif
