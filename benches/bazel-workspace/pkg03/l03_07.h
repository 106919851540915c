#ifndef PKG03_L03_07_H
#define PKG03_L03_07_H
#include <string>
#include <vector>

namespace l03_07 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l03_07

#endif
