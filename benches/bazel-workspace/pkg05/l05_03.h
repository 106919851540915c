#ifndef PKG05_L05_03_H
#define PKG05_L05_03_H
#include <string>
#include <vector>

namespace l05_03 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l05_03

#endif
